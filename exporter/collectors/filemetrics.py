"""The files collector's families, built from one round's facts and verdicts (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from exporter.collectors.filecheck import (
    ERRORS,
    BackupFacts,
    Failed,
    Meta,
    Missing,
    PathFacts,
    Verdict,
    format_mode,
)

ErrorCounts = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class PathRound:
    label: str
    facts: PathFacts
    verdicts: Sequence[Verdict]


@dataclass(frozen=True)
class BackupRound:
    name: str
    facts: BackupFacts | Failed
    fresh: bool | None  # None: no max_age, or the set could not be read


def file_families(rounds: Sequence[PathRound], errors: ErrorCounts) -> list[Metric]:
    path = ["path"]
    exists = GaugeMetricFamily(
        "botwatch_file_exists",
        "1 if the path exists, 0 if it does not; absent while it cannot be looked at "
        "(see botwatch_file_errors_total).",
        labels=path,
    )
    size = GaugeMetricFamily(
        "botwatch_file_size_bytes", "The path's size as ls -l shows it.", labels=path
    )
    modified = GaugeMetricFamily(
        "botwatch_file_modified_timestamp_seconds",
        "When the path was last modified (mtime), Unix time.",
        labels=path,
    )
    info = GaugeMetricFamily(
        "botwatch_file_info",
        "The path's type (file, directory, symlink, other), mode as 4 octal digits, owner "
        "and group (numeric without a name); always 1.",
        labels=["path", "type", "mode", "owner", "group"],
    )
    check_ok = GaugeMetricFamily(
        "botwatch_file_check_ok",
        "1 if the configured check passed, 0 if it failed (every check fails for a missing "
        "path); absent while the path cannot be looked at.",
        labels=["path", "check"],
    )
    for r in sorted(rounds, key=lambda r: r.label):
        own = r.facts.own
        if isinstance(own, Meta):
            exists.add_metric([r.label], 1)
            size.add_metric([r.label], own.size)
            modified.add_metric([r.label], own.mtime)
            info.add_metric([r.label, own.type, format_mode(own.mode), own.owner, own.group], 1)
        elif isinstance(own, Missing):
            exists.add_metric([r.label], 0)
        for verdict in r.verdicts:
            if verdict.ok is not None:
                check_ok.add_metric([r.label, verdict.check], 1 if verdict.ok else 0)
    return [
        exists,
        size,
        modified,
        info,
        check_ok,
        _errors(
            "botwatch_file_errors",
            "Failed attempts to look at the path, follow it or read it, by error "
            "(permission_denied, symlink_loop, io_error, timeout, other).",
            "path",
            errors,
        ),
    ]


def backup_families(rounds: Sequence[BackupRound], errors: ErrorCounts) -> list[Metric]:
    label = ["set"]
    files = GaugeMetricFamily(
        "botwatch_backup_files",
        "Regular files (through symlinks) matching the set's glob; absent while it cannot "
        "be read (see botwatch_backup_errors_total).",
        labels=label,
    )
    last = GaugeMetricFamily(
        "botwatch_backup_last_timestamp_seconds",
        "When the newest matching file was last modified, Unix time (absent without one).",
        labels=label,
    )
    last_size = GaugeMetricFamily(
        "botwatch_backup_last_size_bytes", "Size of the newest matching file.", labels=label
    )
    fresh = GaugeMetricFamily(
        "botwatch_backup_fresh",
        "1 if the newest matching file is at most the set's max_age old, 0 if it is older "
        "or there is none (only for sets with a max_age).",
        labels=label,
    )
    for r in sorted(rounds, key=lambda r: r.name):
        if isinstance(r.facts, BackupFacts):
            files.add_metric([r.name], r.facts.files)
            if r.facts.newest is not None:
                last.add_metric([r.name], r.facts.newest.mtime)
                last_size.add_metric([r.name], r.facts.newest.size)
        if r.fresh is not None:
            fresh.add_metric([r.name], 1 if r.fresh else 0)
    return [
        files,
        last,
        last_size,
        fresh,
        _errors(
            "botwatch_backup_errors",
            "Failed attempts to list or stat the set's files, by error "
            "(permission_denied, symlink_loop, io_error, timeout, other).",
            "set",
            errors,
        ),
    ]


def _errors(name: str, doc: str, label: str, errors: ErrorCounts) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label, "error"])
    for key in sorted(errors):
        for error in ERRORS:
            family.add_metric([key, error], errors[key].get(error, 0))
    return family
