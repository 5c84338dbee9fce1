"""Wire formats. One package per dialect; each decodes and encodes in both directions:
client requests in, responses out, and requests out to upstreams of the same dialect,
responses back in. Dialects import only ``modelmart.core``."""
