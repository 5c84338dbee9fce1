"""Serve ``tests.server.asgi.app`` in a process of its own (for the attack tests, so the
attack's own work in the test process doesn't slow the server):

    python -m tests.server.run_server PORT KIND [LIMITS_JSON] [NOFILE]

KIND is ``modelmart`` or ``uvicorn``; LIMITS_JSON the ``Limits`` fields to set; NOFILE the
soft RLIMIT_NOFILE to run with (the derived connection cap follows it)."""

from __future__ import annotations

import json
import resource
import sys

from tests.server.asgi import app


def main() -> None:
    port, kind = int(sys.argv[1]), sys.argv[2]
    limits = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    if len(sys.argv) > 4:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[4]), hard))
    if kind == "uvicorn":
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        return
    from modelmart.server import Limits, Server

    Server(app, "127.0.0.1", port, limits=Limits(**limits)).run()


if __name__ == "__main__":
    main()
