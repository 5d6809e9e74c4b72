from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import psutil
import pytest
import structlog
from structlog.testing import capture_logs


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    # The daemon's configure() installs a level filter; capture_logs in a later test would
    # inherit it and miss debug events.
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def restore_procfs_path() -> Iterator[None]:
    # The host collector sets psutil's process-wide PROCFS_PATH to a fixture tree.
    saved = psutil.PROCFS_PATH
    try:
        yield
    finally:
        psutil.PROCFS_PATH = saved


@pytest.fixture
def captured_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every event logged during the test, at every level (structlog starts from its
    defaults in each test, so no level filter a daemon configured is in the way)."""
    with capture_logs() as entries:
        yield entries
