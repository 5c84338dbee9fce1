"""Fake upstream servers, one per provider wire format, written from each provider's
documentation. Each runs an aiohttp server on 127.0.0.1 in a background thread."""
