"""`GET /system/df` (what `docker system df -v` shows) -> disk families. Pure: no I/O.

The Trader Bot runbook's disk scenario asks which volumes, images and build cache fill the
disk; this answers it per volume and per container writable layer. The engine reports -1
(or leaves a field out) for sizes it did not compute: those series are left out.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors.dockerstate import JSON, Selection, listed_name


def _size(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def _entries(df: JSON, key: str) -> list[JSON]:
    return [e for e in df.get(key) or () if isinstance(e, dict)]


def df_families(df: JSON, selection: Selection) -> list[Metric]:
    volume_size = GaugeMetricFamily(
        "botwatch_docker_volume_size_bytes",
        "Disk space a volume's data takes (docker system df).",
        labels=["volume"],
    )
    volume_users = GaugeMetricFamily(
        "botwatch_docker_volume_containers",
        "Containers that use the volume; 0 for a dangling one.",
        labels=["volume"],
    )
    for volume in sorted(_entries(df, "Volumes"), key=lambda v: str(v.get("Name"))):
        usage = volume.get("UsageData") or {}
        name = str(volume.get("Name") or "")
        size = _size(usage.get("Size"))
        if size is not None:
            volume_size.add_metric([name], size)
        users = _size(usage.get("RefCount"))
        if users is not None:
            volume_users.add_metric([name], users)

    images = _entries(df, "Images")
    image_sizes = [s for s in (_size(i.get("Size")) for i in images) if s is not None]
    # LayersSize counts shared layers once; podman leaves it 0, then the sum has to do.
    layers = _size(df.get("LayersSize")) or float(sum(image_sizes))
    unused = sum(
        (_size(i.get("Size")) or 0.0) - (_size(i.get("SharedSize")) or 0.0)
        for i in images
        if i.get("Containers") == 0
    )
    build_cache = sum(_size(b.get("Size")) or 0.0 for b in _entries(df, "BuildCache"))

    rw = GaugeMetricFamily(
        "botwatch_container_rw_size_bytes",
        "Size of the container's writable layer: files it wrote outside volumes.",
        labels=["container"],
    )
    for entry in sorted(_entries(df, "Containers"), key=listed_name):
        size = _size(entry.get("SizeRw"))
        if size is not None and selection.selects_listed(entry):
            rw.add_metric([listed_name(entry)], size)

    return [
        volume_size,
        volume_users,
        GaugeMetricFamily("botwatch_docker_images", "Images the engine holds.", value=len(images)),
        GaugeMetricFamily(
            "botwatch_docker_images_size_bytes",
            "Disk space all images take, shared layers once.",
            value=layers,
        ),
        GaugeMetricFamily(
            "botwatch_docker_images_unused_bytes",
            "Disk space of images no container uses, less layers they share with others.",
            value=unused,
        ),
        GaugeMetricFamily(
            "botwatch_docker_build_cache_size_bytes",
            "Disk space the build cache takes.",
            value=build_cache,
        ),
        rw,
    ]
