"""The framework ceiling: Starlette on uvicorn (httptools + uvloop), as Homing is served, with a
publish-shaped endpoint that reads the body and answers like Homing but stores nothing.

Whatever Homing's publish path costs on top of this is Homing's own work (auth, validation,
ids, storage); this process is the upper bound for it on this machine.

    python -m bench.framework --port P
"""

from __future__ import annotations

import argparse
import itertools

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.common import LOOPBACK

_counter = itertools.count()


async def publish(request: Request) -> Response:
    await request.body()
    out = {"messageId": f"msg_{next(_counter)}", "url": request.path_params["rest"]}
    return Response(orjson.dumps(out), status_code=201, media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/v2/publish/{rest:path}", publish, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same server settings as homing.server.serve, so only the application differs.
    uvicorn.run(
        app,
        host=LOOPBACK,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
