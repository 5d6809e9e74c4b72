"""dockerdf: `GET /system/df` -> disk families, on Docker's documented shape and podman's."""

from __future__ import annotations

import re

from exporter.collectors.dockerdf import df_families
from exporter.collectors.dockerstate import Selection
from tests.streams import value

EVERYTHING = Selection(re.compile(""), re.compile("^$"))

DOCKER = {
    "LayersSize": 1_092_588,
    "Images": [
        {"Id": "i-used", "Size": 1_000_000, "SharedSize": 0, "Containers": 2},
        {"Id": "i-old", "Size": 500_000, "SharedSize": 100_000, "Containers": 0},
    ],
    "Containers": [
        {"Id": "c1", "Names": ["/trader-api"], "SizeRw": 4096, "Labels": {}},
        {"Id": "c2", "Names": ["/timescaledb"], "SizeRw": -1, "Labels": {}},
        {"Id": "c3", "Names": ["/other"], "SizeRw": 10, "Labels": {}},
    ],
    "Volumes": [
        {"Name": "trader_timescaledb_data", "UsageData": {"Size": 2_000_000, "RefCount": 1}},
        {"Name": "dangling", "UsageData": {"Size": 10, "RefCount": 0}},
        {"Name": "not-computed", "UsageData": {"Size": -1, "RefCount": -1}},
    ],
    "BuildCache": [{"ID": "b1", "Size": 300}, {"ID": "b2", "Size": 700}],
}
# podman 4.3, as it answered here: no LayersSize, no SharedSize, an empty volume list as null.
PODMAN = {
    "LayersSize": 0,
    "Images": [{"Id": "i", "Size": 2_131_015, "SharedSize": 0, "Containers": 1}],
    "Containers": [{"Id": "c", "Names": ["x2"], "SizeRw": 12, "SizeRootFs": 1_984_132}],
    "Volumes": None,
    "BuildCache": [],
    "BuilderSize": 0,
}


def test_docker_system_df() -> None:
    fams = df_families(DOCKER, EVERYTHING)
    volume = "trader_timescaledb_data"
    assert value(fams, "botwatch_docker_volume_size_bytes", volume=volume) == 2_000_000
    assert value(fams, "botwatch_docker_volume_containers", volume="dangling") == 0
    assert value(fams, "botwatch_docker_volume_size_bytes", volume="not-computed") is None
    assert value(fams, "botwatch_docker_volume_containers", volume="not-computed") is None
    assert value(fams, "botwatch_docker_images") == 2
    assert value(fams, "botwatch_docker_images_size_bytes") == 1_092_588  # layers once
    assert value(fams, "botwatch_docker_images_unused_bytes") == 400_000
    assert value(fams, "botwatch_docker_build_cache_size_bytes") == 1000
    assert value(fams, "botwatch_container_rw_size_bytes", container="trader-api") == 4096
    assert value(fams, "botwatch_container_rw_size_bytes", container="timescaledb") is None


def test_podman_system_df() -> None:
    fams = df_families(PODMAN, EVERYTHING)
    assert value(fams, "botwatch_docker_volume_size_bytes") is None
    assert value(fams, "botwatch_docker_images_size_bytes") == 2_131_015  # the sum, then
    assert value(fams, "botwatch_docker_images_unused_bytes") == 0
    assert value(fams, "botwatch_container_rw_size_bytes", container="x2") == 12


def test_writable_layers_of_selected_containers_only() -> None:
    only_trader = Selection(re.compile("^trader-"), re.compile("^$"))
    fams = df_families(DOCKER, only_trader)
    assert value(fams, "botwatch_container_rw_size_bytes", container="trader-api") == 4096
    assert value(fams, "botwatch_container_rw_size_bytes", container="other") is None
    # Volumes and images belong to the engine, not to a container: always reported.
    assert value(fams, "botwatch_docker_volume_size_bytes", volume="dangling") == 10


def test_garbage_fields_are_left_out_not_fatal() -> None:
    fams = df_families(
        {"Images": "x", "Volumes": [1, {"Name": "v"}], "LayersSize": "?"}, EVERYTHING
    )
    assert value(fams, "botwatch_docker_images") == 0
    assert value(fams, "botwatch_docker_volume_size_bytes") is None
