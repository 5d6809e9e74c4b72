"""The one place that builds a Docker Engine API client (docker SDK).

Everything that talks to the engine (the docker log source, the docker collector) gets its
client here, so the address rules and the error wording are the same everywhere. The SDK is
imported lazily: a config without docker parts never pays for it (RSS, start-up time).

The SDK is blocking; callers run it in a thread (exporter.threads.BlockingCalls).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import docker

DEFAULT_URL = "unix:///var/run/docker.sock"


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
