"""The floor: bare aiohttp handlers that return fixed bytes, run as their own process.

``PUT /body`` stores the bytes to answer with (the benchmark uploads what the proxy just
returned); ``GET /body`` answers with them; ``PUT /sink`` reads a whole request body (the
benchmark sends the body it just sent the proxy) and answers with them. Nothing else
happens per request, so their latency is what any aiohttp server on this machine costs
to receive and send those bytes, client included.

    python -m load.floor --port 8099
"""

from __future__ import annotations

import argparse

from aiohttp import web


class Answer:
    """The bytes every answer carries (kept as bytes: answering copies nothing)."""

    body = b"{}"


ANSWER = web.AppKey("answer", Answer)


def _respond(request: web.Request) -> web.Response:
    return web.Response(body=request.app[ANSWER].body, content_type="application/json")


async def _get(request: web.Request) -> web.Response:
    return _respond(request)


async def _sink(request: web.Request) -> web.Response:
    await request.read()
    return _respond(request)


async def _put(request: web.Request) -> web.Response:
    request.app[ANSWER].body = await request.read()
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def create_app() -> web.Application:
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app[ANSWER] = Answer()
    app.router.add_get("/body", _get)
    app.router.add_put("/body", _put)
    app.router.add_put("/sink", _sink)
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
