"""Files the runbooks check by hand: existence, type, mode, owner, YAML syntax, backups.

Each configured path and each backup set is looked at in its own thread under
`stat_timeout`, so a path on a hung mount is reported as a timeout while the others go on,
and it is not looked at again until its stuck call returns. A path that cannot be looked at
(permission denied, a hang) has no `exists` and no check verdicts, since either would be a
guess; its failures are counted in botwatch_file_errors_total instead.

Pure parts: filecheck.py (facts, verdicts, the YAML check's wording), filemetrics.py
(families). I/O: fileread.py. Config: fileconfig.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from prometheus_client.metrics_core import Metric

from exporter.collector import Context
from exporter.collectors.filecheck import (
    BackupFacts,
    Failed,
    Missing,
    PathFacts,
    Verdict,
    backup_fresh,
    evaluate,
    failures,
)
from exporter.collectors.fileconfig import BackupSet, FileChecks, FilePath, FilesConfig
from exporter.collectors.filemetrics import (
    BackupRound,
    PathRound,
    backup_families,
    file_families,
)
from exporter.collectors.fileread import (
    Accounts,
    Root,
    accounts_for,
    inspect_backups,
    inspect_path,
    yaml_loader,
)
from exporter.fields import format_duration
from exporter.registry import collector
from exporter.threads import StillBlocked

__all__ = ["BackupSet", "FileChecks", "FilePath", "FilesCollector", "FilesConfig"]

log = structlog.get_logger("exporter.collectors.files")
T = TypeVar("T")
Problems = dict[str, str]


def path_problems(facts: PathFacts, verdicts: list[Verdict]) -> Problems:
    """What is wrong with a path, by aspect, for logging the start and end of each."""
    problems: Problems = {}
    failed = failures(facts)
    if failed:
        problems["unreadable"] = ", ".join(f"{f.error} ({f.detail})" for f in failed)
    if isinstance(facts.own, Missing):
        problems["exists"] = facts.own.reason
        return problems  # every check fails for the same reason: said once
    for verdict in verdicts:
        if verdict.ok is False:
            problems[verdict.check] = verdict.reason
    return problems


def changes(before: Problems, after: Problems) -> tuple[Problems, list[str]]:
    """Problems that are new, and those that went away. One that goes on is not logged
    again, even when its reason reads differently (an age grows every round)."""
    started = {k: v for k, v in after.items() if k not in before}
    ended = [k for k in before if k not in after]
    return started, ended


# Log events per aspect: (when it starts, when it ends).
_PATH_EVENTS = {
    "unreadable": ("file unreadable", "file readable again"),
    "exists": ("file missing", "file present again"),
}
_CHECK_EVENTS = ("file check failed", "file check passed again")
_BACKUP_EVENTS = {
    "unreadable": ("backup set unreadable", "backup set readable again"),
    "fresh": ("backup set stale", "backup set fresh again"),
}


class FilesCollector:
    def __init__(self, config: FilesConfig, ctx: Context, root: Root | None = None) -> None:
        self.config = config
        self.ctx = ctx
        self.root = root or Root(str(config.rootfs))
        self._loader = yaml_loader()
        # Counters live as long as the collector: a reload that changes the section starts
        # them again from 0, which Prometheus' rate() takes as a counter reset.
        self._path_errors = {p.label: Counter[str]() for p in config.paths}
        self._backup_errors = {b.name: Counter[str]() for b in config.backups}
        self._problems: dict[tuple[str, str], Problems] = {}

    async def collect(self) -> list[Metric]:
        accounts = accounts_for(self.root)
        paths = asyncio.gather(*(self._path(p, accounts) for p in self.config.paths))
        backups = asyncio.gather(*(self._backups(b) for b in self.config.backups))
        path_facts, backup_facts = await asyncio.gather(paths, backups)
        now = time.time()
        families: list[Metric] = []
        if self.config.paths:
            rounds = [
                self._path_round(spec, facts, now)
                for spec, facts in zip(self.config.paths, path_facts, strict=True)
            ]
            families += file_families(rounds, self._path_errors)
        if self.config.backups:
            sets = [
                self._backup_round(spec, facts, now)
                for spec, facts in zip(self.config.backups, backup_facts, strict=True)
            ]
            families += backup_families(sets, self._backup_errors)
        return families

    async def _bounded(self, key: str, fn: Callable[..., T], *args: Any) -> T | Failed:
        timeout = self.config.stat_timeout
        try:
            return await asyncio.wait_for(self.ctx.blocking.run(key, fn, *args), timeout)
        except (TimeoutError, StillBlocked):
            # StillBlocked: the call of an earlier round has not returned; it is the same
            # hang, so it reads the same.
            return Failed("timeout", f"no answer within {format_duration(timeout)}")

    async def _path(self, spec: FilePath, accounts: Accounts) -> PathFacts:
        facts = await self._bounded(
            f"files path {spec.label}",
            inspect_path,
            self.root,
            spec,
            accounts,
            self.config.max_yaml_bytes,
            self._loader,
        )
        return PathFacts(facts) if isinstance(facts, Failed) else facts

    async def _backups(self, spec: BackupSet) -> BackupFacts | Failed:
        return await self._bounded(
            f"files backups {spec.name}", inspect_backups, self.root, spec.glob
        )

    def _path_round(self, spec: FilePath, facts: PathFacts, now: float) -> PathRound:
        verdicts = evaluate(spec.checks, facts, now)
        for failed in failures(facts):
            self._path_errors[spec.label][failed.error] += 1
        self._log_path(spec, path_problems(facts, verdicts))
        return PathRound(spec.label, facts, verdicts)

    def _backup_round(
        self, spec: BackupSet, facts: BackupFacts | Failed, now: float
    ) -> BackupRound:
        problems: Problems = {}
        fresh: bool | None = None
        if isinstance(facts, Failed):
            self._backup_errors[spec.name][facts.error] += 1
            problems["unreadable"] = f"{facts.error} ({facts.detail})"
        elif spec.max_age is not None:
            fresh, reason = backup_fresh(facts, spec.max_age, now)
            if not fresh:
                problems["fresh"] = reason
        self._log_backups(spec, problems)
        return BackupRound(spec.name, facts, fresh)

    def _log_path(self, spec: FilePath, problems: Problems) -> None:
        started, ended = self._remember(("path", spec.label), problems)
        bound = log.bind(collector=self.ctx.name, path=spec.label)
        for aspect, reason in started.items():
            if aspect in _PATH_EVENTS:
                bound.warning(_PATH_EVENTS[aspect][0], reason=reason)
            else:
                bound.warning(_CHECK_EVENTS[0], check=aspect, reason=reason)
        for aspect in ended:
            if aspect in _PATH_EVENTS:
                bound.info(_PATH_EVENTS[aspect][1])
            else:
                bound.info(_CHECK_EVENTS[1], check=aspect)

    def _log_backups(self, spec: BackupSet, problems: Problems) -> None:
        started, ended = self._remember(("backups", spec.name), problems)
        bound = log.bind(collector=self.ctx.name, set=spec.name)
        for aspect, reason in started.items():
            bound.warning(_BACKUP_EVENTS[aspect][0], reason=reason)
        for aspect in ended:
            bound.info(_BACKUP_EVENTS[aspect][1])

    def _remember(self, key: tuple[str, str], problems: Problems) -> tuple[Problems, list[str]]:
        started, ended = changes(self._problems.get(key, {}), problems)
        self._problems[key] = problems
        return started, ended


@collector(
    "files",
    config=FilesConfig,
    kind="poller",
    help="Paths (exists, type, mode, owner, group, executable, YAML syntax, age) and backups.",
)
def build(config: FilesConfig, ctx: Context) -> FilesCollector:
    return FilesCollector(config, ctx)
