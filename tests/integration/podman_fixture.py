"""The `podman` fixture: one real Docker Engine API (tests/podman.py) per test module.

Use it by importing it into a test module:

    from tests.integration.podman_fixture import podman  # noqa: F401  (a fixture)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.podman import Podman


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    engine = Podman.create()
    try:
        engine.start()
        yield engine
    finally:
        engine.close()
