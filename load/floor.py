"""The floor: a bare aiohttp handler that returns fixed bytes, run as its own process.

``PUT /body`` stores the bytes to serve (the benchmark uploads what the proxy's GET recent
returned); ``GET /body`` answers with them as JSON. Nothing else happens per request, so its
latency is what any aiohttp server on this machine costs, client included.

    python -m load.floor --port 8099
"""

from __future__ import annotations

import argparse

from aiohttp import web

BODY = web.AppKey("body", bytearray)


async def _get(request: web.Request) -> web.Response:
    return web.Response(body=bytes(request.app[BODY]), content_type="application/json")


async def _put(request: web.Request) -> web.Response:
    body = request.app[BODY]
    body[:] = await request.read()
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def create_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[BODY] = bytearray(b"{}")
    app.router.add_get("/body", _get)
    app.router.add_put("/body", _put)
    app.router.add_get("/-/healthz", _healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m load.floor")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:  # the same event loop the proxy uses when it is installed
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(create_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
