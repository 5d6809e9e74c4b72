"""The one place that builds a Docker Engine API client (docker SDK).

Everything that talks to the engine (the docker log source, the docker collector) gets its
client here, so the address rules and the error wording are the same everywhere. The SDK is
imported lazily: a config without docker parts never pays for it (RSS, start-up time).

The SDK is blocking; callers run it in a thread (exporter.threads.BlockingCalls).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import docker
    import requests

DEFAULT_URL = "unix:///var/run/docker.sock"
READ_SIZE = 1 << 16


def engine_url(url: str | None) -> str:
    """The configured address, else $DOCKER_HOST, else the standard socket."""
    return url or os.environ.get("DOCKER_HOST") or DEFAULT_URL


def client(url: str | None, timeout: float, version: str = "auto") -> docker.DockerClient:
    """A client for the engine at `url` (see engine_url); `timeout` bounds each request.

    With version "auto" (the default) the constructor asks the engine for its API version,
    so it blocks, and fails with docker.errors.DockerException when the engine is away: build
    it in the same thread and error handling as the calls that follow. Streams the SDK
    follows (logs, events) are exempt from `timeout`.
    """
    import docker

    return docker.DockerClient(base_url=engine_url(url), timeout=timeout, version=version)


def describe(exc: BaseException) -> str:
    """One line, no secrets, for sink.down / logs: what went wrong talking to the engine."""
    import docker.errors

    if isinstance(exc, docker.errors.NotFound):
        return f"not found: {_explanation(exc)}"
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code if exc.status_code is not None else "?"
        return f"engine error {status}: {_explanation(exc)}"
    # requests nests the OS error several levels deep, inside texts like "Connection aborted"
    # or "Max retries exceeded with url: ..."; the innermost OS error is what one acts on.
    # (requests' own errors are OSErrors too, without strerror.)
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return f"cannot reach the engine: {cause.strerror}"
        cause = cause.__cause__ or cause.__context__
    return " ".join((str(exc) or type(exc).__name__).split())[:300]


def _explanation(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return " ".join(str(explanation or exc).split())[:300]


# Followed streams (logs, events) --------------------------------------------------------


class StoppableResponse:
    """A followed response being read in a thread, which the loop can end at any time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._response: requests.Response | None = None
        self.stopped = False

    def attach(self, response: requests.Response) -> bool:
        """-> False (and the response closed) if stop() came first."""
        with self._lock:
            if not self.stopped:
                self._response = response
                return True
        close_response(response)
        return False

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            response, self._response = self._response, None
        if response is not None:
            close_response(response)


def close_response(response: requests.Response) -> None:
    # urllib3's shutdown() ends a read blocked in another thread at once; close() alone
    # would leave that thread waiting for the engine's next byte.
    with contextlib.suppress(Exception):
        shutdown = getattr(response.raw, "shutdown", None)  # urllib3 >= 2.3
        if shutdown is not None:
            shutdown()
    with contextlib.suppress(Exception):
        response.close()


def read_chunks(response: requests.Response) -> Iterator[bytes]:
    """Whatever the engine has sent so far, until the stream ends or is stopped."""
    import urllib3.exceptions

    raw = response.raw
    with contextlib.suppress(OSError, urllib3.exceptions.HTTPError):
        while chunk := raw.read1(READ_SIZE):
            yield chunk


def open_stream(
    client: docker.DockerClient,
    path: str,
    params: dict[str, Any],
    holder: StoppableResponse,
    *,
    connect_timeout: float,
    header_wait: float | None = None,
) -> requests.Response | None:
    """GET a followed endpoint (`/events`, `/containers/ID/logs`) as a raw response, attached
    to `holder`; None if the holder was stopped first. Raises docker.errors.APIError for an
    HTTP error status.

    `header_wait`: for endpoints where the engine holds back the response headers until it
    has something to send (podman's logs). A request cannot be interrupted while it waits
    for them, so it is given up after `header_wait` and made again, until stopped.
    """
    import docker.errors
    import requests

    api = client.api
    url = f"{api.base_url}/v{api.api_version}{path}"
    while not holder.stopped:
        try:
            response: requests.Response = api.get(
                url, params=params, stream=True, timeout=(connect_timeout, header_wait)
            )
        except requests.exceptions.ReadTimeout:
            if header_wait is None:
                raise
            continue
        try:
            response.raise_for_status()
        except requests.HTTPError as exc:
            response.close()
            raise docker.errors.create_api_error_from_http_exception(exc) from None
        # A quiet stream is fine: no read timeout from here on. (Should this fail, a quiet
        # spell ends the stream and the caller opens it again: slower, still correct.)
        with contextlib.suppress(AttributeError, OSError):
            response.raw.connection.sock.settimeout(None)
        return response if holder.attach(response) else None
    return None
