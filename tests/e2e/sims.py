"""The simulated Trader Bot and AlphaEngine, as botwatch's probes see them over the network.

    sims = Sims()                       # one asyncio loop in a thread, servers on 127.0.0.1
    sims.trader.health_status = 500     # /health fails from the next request on
    sims.trader.ws_dropping = True      # /ws closes every connection (1011) shortly after open
    sims.close()

- trader-api (the Rust API server on :3000 in production): GET /health ({"status": "ok"}),
  the dashboard's CORS preflight on /api/v1/health, and the client WebSocket /ws, which
  sends a tick every second and answers pings.
- alphaengine-web (uvicorn on 127.0.0.1:8000): GET /health.
- the exchange: a Binance-futures-like stream at /ws that acknowledges the bot's SUBSCRIBE
  and sends a mark price every second (nothing leaves 127.0.0.1).

Extra aiohttp applications (the demo's runbook pages) can be served on the same loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

HOST = "127.0.0.1"
TICK = 1.0  # seconds between a feed's messages
DROP_AFTER = 0.3  # a dropping WebSocket closes this long after the handshake
CALL_TIMEOUT = 30.0
DASHBOARD_ORIGIN = "http://localhost:5173"  # the trader-bot preset's CORS probe origin

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in a daemon thread; `call` runs a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="sims", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=CALL_TIMEOUT)
        self.loop.close()


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket()
    sock.bind((HOST, 0))
    site = web.SockSite(runner, sock)
    await site.start()
    return runner, int(sock.getsockname()[1])


async def feed(
    ws: web.WebSocketResponse,
    message: Callable[[], dict[str, Any]],
    stop: Callable[[], bool] | None = None,
) -> None:
    """Send `message()` every TICK until the peer leaves (or `stop()` turns true); reading in
    between lets aiohttp answer the probe's pings."""
    next_tick = time.monotonic()
    while not ws.closed:
        if stop is not None and stop():
            await ws.close(code=1011, message=b"upstream gone")
            return
        if time.monotonic() >= next_tick:
            await ws.send_str(json.dumps(message()))
            next_tick += TICK
        try:
            msg = await ws.receive(timeout=0.1)
        except TimeoutError:
            continue
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return


class TraderApi:
    """trader-api's HTTP side. Faults: `health_status`, `ws_dropping`."""

    def __init__(self) -> None:
        self.health_status = 200
        self.ws_dropping = False
        self.ws_connects = 0
        self.app = web.Application()
        self.app.router.add_get("/health", self.health)
        self.app.router.add_route("*", "/api/v1/health", self.api_health)
        self.app.router.add_get("/ws", self.ws)

    async def health(self, _request: web.Request) -> web.Response:
        status = self.health_status
        body = {"status": "ok"} if status == 200 else {"status": "error", "db": "unreachable"}
        return web.json_response(body, status=status)

    async def api_health(self, request: web.Request) -> web.Response:
        headers = {}
        if request.headers.get("Origin") == DASHBOARD_ORIGIN:  # CORS_ORIGINS
            headers = {
                "Access-Control-Allow-Origin": DASHBOARD_ORIGIN,
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Vary": "Origin",
            }
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=headers)
        return web.json_response({"status": "ok"}, headers=headers)

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.ws_connects += 1
        if self.ws_dropping:
            await ws.send_str(json.dumps({"type": "hello"}))
            with contextlib.suppress(TimeoutError):
                await ws.receive(timeout=DROP_AFTER)  # the probe's first ping is answered
            await ws.close(code=1011, message=b"upstream gone")
            return ws
        await feed(
            ws, lambda: {"type": "ticker", "symbol": "BTCUSDT"}, stop=lambda: self.ws_dropping
        )
        return ws


class AlphaEngineWeb:
    """alphaengine-web's health endpoint. Fault: `health_status`."""

    def __init__(self) -> None:
        self.health_status = 200
        self.app = web.Application()
        self.app.router.add_get("/health", self.health)

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, status=self.health_status)


class Exchange:
    """The Binance futures stream the bot subscribes to (btcusdt@markPrice)."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.app.router.add_get("/ws", self.ws)

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        with contextlib.suppress(TimeoutError):
            first = await ws.receive(timeout=5)
            if first.type == WSMsgType.TEXT:
                request_id = json.loads(first.data).get("id")
                await ws.send_str(json.dumps({"result": None, "id": request_id}))
        await feed(
            ws,
            lambda: {"e": "markPriceUpdate", "E": int(time.time() * 1000), "s": "BTCUSDT"},
        )
        return ws


class Sims:
    def __init__(self) -> None:
        self.thread = LoopThread()
        self.trader = TraderApi()
        self.alpha_web = AlphaEngineWeb()
        self.exchange = Exchange()
        self._runners: list[web.AppRunner] = []
        try:
            self.trader_port = self.add(self.trader.app)
            self.alpha_web_port = self.add(self.alpha_web.app)
            self.exchange_port = self.add(self.exchange.app)
        except BaseException:
            self.close()
            raise

    def add(self, app: web.Application) -> int:
        """Serve `app` on 127.0.0.1 and a free port; -> the port."""
        runner, port = self.thread.call(serve(app))
        self._runners.append(runner)
        return port

    def close(self) -> None:
        for runner in self._runners:
            with contextlib.suppress(Exception):
                self.thread.call(runner.cleanup(), timeout=10)
        self.thread.close()
