"""A small Docker-Engine-API-compatible server (aiohttp, unix socket) for what podman cannot show.

podman 4.3 here never reports an OOM kill (no `oom` event, State.OOMKilled never set), and a
real engine cannot be told to lose events, send garbage or hang one endpoint. This server
speaks just enough of the API for the docker SDK and botwatch's docker collector: /_ping,
/version, container list/inspect/stats, /events (history replayed from `since`, then live)
and /system/df, each with or without the /v1.41 prefix. It runs on the test's event loop;
the collector's SDK calls run in threads, so the loop is free to answer them.

    engine = FakeEngine(tmp_path / "engine.sock")
    await engine.start()
    engine.add("web")                      # running, with a start event
    engine.oom_kill("web")                 # oom + die 137 events, inspect OOMKilled
    await engine.stop()
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

API = "1.41"
ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ns: int) -> str:
    seconds, fraction = divmod(ns, 10**9)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:09d}Z"


class FakeEngine:
    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.url = f"unix://{socket}"
        self.containers: dict[str, dict[str, Any]] = {}  # id -> inspect document
        self.history: list[dict[str, Any]] = []  # every event, for `since` replays
        self.hang: set[str] = set()  # endpoint names that never answer ("list", "df", ...)
        self.df: dict[str, Any] = {"Images": [], "Containers": [], "Volumes": [], "BuildCache": []}
        self.requests: list[str] = []
        self._subscribers: set[asyncio.Queue[bytes | None]] = set()
        self._release = asyncio.Event()  # ends the hung requests when the engine stops
        self._runner: web.AppRunner | None = None

    # Server ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._release = asyncio.Event()
        app = web.Application()
        for prefix in ("", f"/v{API}"):
            app.router.add_get(f"{prefix}/_ping", self._ping)
            app.router.add_get(f"{prefix}/version", self._version)
            app.router.add_get(f"{prefix}/containers/json", self._list)
            app.router.add_get(f"{prefix}/containers/{{id}}/json", self._inspect)
            app.router.add_get(f"{prefix}/containers/{{id}}/stats", self._stats)
            app.router.add_get(f"{prefix}/events", self._events)
            app.router.add_get(f"{prefix}/system/df", self._df)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.UnixSite(self._runner, str(self.socket)).start()

    async def stop(self) -> None:
        """The engine goes away: streams end, the socket is gone (state is kept)."""
        self.drop_streams()
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.socket.unlink(missing_ok=True)

    def drop_streams(self) -> None:
        for queue in list(self._subscribers):
            queue.put_nowait(None)

    async def _hang_if(self, what: str) -> None:
        self.requests.append(what)
        if what in self.hang:
            await self._release.wait()
            raise web.HTTPServiceUnavailable()

    async def _ping(self, _: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _version(self, _: web.Request) -> web.Response:
        return web.json_response({"ApiVersion": API, "Version": "fake", "MinAPIVersion": "1.24"})

    async def _list(self, _: web.Request) -> web.Response:
        await self._hang_if("list")
        return web.json_response([self._listed(c) for c in self.containers.values()])

    async def _inspect(self, request: web.Request) -> web.Response:
        await self._hang_if("inspect")
        found = self._find(request.match_info["id"])
        if found is None:
            return web.json_response({"message": "no such container"}, status=404)
        return web.json_response(found)

    async def _stats(self, request: web.Request) -> web.Response:
        await self._hang_if("stats")
        found = self._find(request.match_info["id"])
        if found is None:
            return web.json_response({"message": "no such container"}, status=404)
        return web.json_response(
            {
                "memory_stats": {"usage": 10 * 2**20, "limit": 2**30},
                "cpu_stats": {"cpu_usage": {"total_usage": 5 * 10**9}},
            }
        )

    async def _df(self, _: web.Request) -> web.Response:
        await self._hang_if("df")
        return web.json_response(self.df)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        await self._hang_if("events")
        since = request.query.get("since")
        since_ns = int(float(since) * 10**9) if since else time.time_ns()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        for event in self.history:
            if event["timeNano"] >= since_ns:
                queue.put_nowait(json.dumps(event).encode() + b"\n")
        self._subscribers.add(queue)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            while (line := await queue.get()) is not None:
                await response.write(line)
        finally:
            self._subscribers.discard(queue)
        return response

    # What the tests do -----------------------------------------------------------------

    def add(self, name: str, labels: dict[str, str] | None = None) -> str:
        cid = hashlib.sha256(name.encode()).hexdigest()
        now = time.time_ns()
        self.containers[cid] = {
            "Id": cid,
            "Name": f"/{name}",
            "Created": rfc3339(now),
            "RestartCount": 0,
            "State": {
                "Status": "running",
                "Running": True,
                "Paused": False,
                "Restarting": False,
                "OOMKilled": False,
                "Dead": False,
                "Pid": 4242,
                "ExitCode": 0,
                "StartedAt": rfc3339(now),
                "FinishedAt": ZERO_TIME,
            },
            "Config": {"Image": "fake/app:1", "Labels": labels or {}},
            "HostConfig": {"Memory": 2**30, "RestartPolicy": {"Name": "always"}},
        }
        self.emit(cid, "create")
        self.emit(cid, "start")
        return cid

    def oom_kill(self, name: str, *, announce: bool = True) -> None:
        """The kernel's OOM killer ends the container (exit 137); with `announce` false the
        engine sends no event for it (as if it happened while nobody listened)."""
        cid = self.id_of(name)
        state = self.containers[cid]["State"]
        if announce:
            self.emit(cid, "oom")
        now = time.time_ns()
        state.update(
            Status="exited",
            Running=False,
            OOMKilled=True,
            ExitCode=137,
            Pid=0,
            FinishedAt=rfc3339(now),
        )
        if announce:
            self.emit(cid, "die", exitCode="137")

    def restart(self, name: str) -> None:
        """Started again by its restart policy: OOMKilled is cleared, as Docker does."""
        cid = self.id_of(name)
        container = self.containers[cid]
        container["RestartCount"] += 1
        container["State"].update(
            Status="running",
            Running=True,
            OOMKilled=False,
            Pid=4243,
            StartedAt=rfc3339(time.time_ns()),
        )
        self.emit(cid, "restart")
        self.emit(cid, "start")

    def emit(self, cid: str, action: str, **attributes: str) -> None:
        name = self.containers[cid]["Name"].lstrip("/")
        now = time.time_ns()
        event = {
            "status": action,
            "id": cid,
            "Type": "container",
            "Action": action,
            "Actor": {"ID": cid, "Attributes": {"name": name, "image": "fake/app:1", **attributes}},
            "scope": "local",
            "time": now // 10**9,
            "timeNano": now,
        }
        self.history.append(event)
        self.send_raw(json.dumps(event).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        """Bytes to every open event stream as they are (garbage included)."""
        for queue in self._subscribers:
            queue.put_nowait(data)

    def id_of(self, name: str) -> str:
        return next(c for c, doc in self.containers.items() if doc["Name"] == f"/{name}")

    @property
    def streams(self) -> int:
        return len(self._subscribers)

    def _find(self, ref: str) -> dict[str, Any] | None:
        for cid, doc in self.containers.items():
            if cid.startswith(ref) or doc["Name"] == f"/{ref}":
                return copy.deepcopy(doc)
        return None

    @staticmethod
    def _listed(doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "Id": doc["Id"],
            "Names": [doc["Name"]],
            "Image": doc["Config"]["Image"],
            "Labels": doc["Config"]["Labels"],
            "State": doc["State"]["Status"],
        }
