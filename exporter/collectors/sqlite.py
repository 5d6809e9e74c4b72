"""The bot's SQLite databases, read without risk to them: size, WAL size, integrity (on its
own slow schedule), row counts, duplicated keys and configured read-only queries.

Each database is read in its own worker thread (a BlockingCalls key per database) under a
bound, so a locked, hung or broken one is reported for itself while the others are still
measured. How a database is opened without ever writing, locking out a writer or leaving a
file behind is in `sqlitefile.py`; the SQL rules in `sqlitequery.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from prometheus_client.metrics_core import Metric

from exporter.collector import Context
from exporter.collectors.sqliteconfig import DatabaseConfig, SqliteConfig
from exporter.collectors.sqlitefile import Cancel, Target, check_integrity, read_database
from exporter.collectors.sqlitemetrics import (
    INTEGRITY,
    OPEN,
    DbView,
    Failure,
    IntegrityOutcome,
    Reading,
    sqlite_families,
)
from exporter.collectors.sqlitequery import ERROR_KINDS, ErrorKind
from exporter.fields import format_duration
from exporter.redact import masked_label
from exporter.registry import collector
from exporter.threads import StillBlocked

log = structlog.get_logger("exporter.collectors.sqlite")

# A database's read gets this share of the collector's timeout: one that does not answer in
# time is reported as stuck, instead of the whole round timing out with it.
READ_SHARE = 0.9


@dataclass
class IntegrityState:
    ok: bool | None = None  # None: no verdict about the current file
    checked_at: float | None = None
    file_id: tuple[int, int] | None = None
    # The verdict came from a round meeting corruption, not from a quick_check.
    from_round: bool = False
    due_at: float = 0.0  # monotonic
    task: asyncio.Task[None] | None = None
    cancel: Cancel | None = None

    def forget(self) -> None:
        self.ok, self.checked_at, self.file_id, self.from_round = None, None, None, False
        self.due_at = 0.0


@dataclass
class Database:
    config: DatabaseConfig
    target: Target
    errors: dict[ErrorKind, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    # The kind of error each failing step is in a streak of: logged once, at its start.
    failing: dict[str, ErrorKind] = field(default_factory=dict)
    wal_files_missing: bool = False
    rounds: int = 0
    integrity: IntegrityState = field(default_factory=IntegrityState)

    @property
    def key(self) -> str:
        return f"sqlite {self.config.name}"


ReadFn = Callable[[Target, Cancel], Reading]
CheckFn = Callable[[Target, Cancel], IntegrityOutcome]


class SqliteCollector:
    def __init__(
        self,
        config: SqliteConfig,
        ctx: Context,
        read: ReadFn = read_database,
        check: CheckFn = check_integrity,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.ctx = ctx
        self._read = read
        self._check = check
        self._clock = clock
        self._bound = config.timeout * READ_SHARE
        self.databases = [
            Database(db, Target(db.name, db.path, db.busy_timeout, db.all_queries()))
            for db in config.databases
        ]

    async def collect(self) -> list[Metric]:
        views = await asyncio.gather(*(self._round(db) for db in self.databases))
        return sqlite_families(views)

    async def close(self) -> None:
        tasks = []
        for db in self.databases:
            state = db.integrity
            if state.cancel is not None:
                state.cancel.cancel()  # a quick_check must not hold its snapshot past us
            if state.task is not None:
                state.task.cancel()
                tasks.append(state.task)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _round(self, db: Database) -> DbView:
        started = time.monotonic()
        cancel = Cancel()
        try:
            reading = await asyncio.wait_for(
                self.ctx.blocking.run(db.key, self._read, db.target, cancel), self._bound
            )
        except TimeoutError:
            cancel.cancel()
            message = f"no answer within {format_duration(self._bound)}; interrupted"
            reading = Reading(failures=[Failure(OPEN, "locked", message)])
        except StillBlocked as exc:
            message = f"the previous read is still stuck ({exc})"
            reading = Reading(failures=[Failure(OPEN, "locked", message)])
        except asyncio.CancelledError:
            cancel.cancel()  # the round timed out or botwatch stops: end the read too
            raise
        # A query may select a column holding a configured secret as its label.
        reading.samples = {
            name: [
                (tuple(masked_label(v, self.ctx.redact) for v in labels), value)
                for labels, value in samples
            ]
            for name, samples in reading.samples.items()
        }
        self._account(db, reading.failures, reading.succeeded)
        self._note_wal_files(db, reading.wal_files_missing)
        self._judge_from_round(db, reading)
        task = self._maybe_check(db, reading)
        if task is not None and db.rounds == 0:
            # The first round (and `once`) waits for a quick check of a small database.
            remaining = self._bound - (time.monotonic() - started)
            if remaining > 0:
                await asyncio.wait({task}, timeout=remaining)
        db.rounds += 1
        state = db.integrity
        return DbView(
            name=db.config.name,
            reading=reading,
            queries=db.target.queries,
            errors=dict(db.errors),
            integrity_ok=state.ok,
            integrity_time=state.checked_at,
        )

    def _account(self, db: Database, failures: list[Failure], succeeded: set[str]) -> None:
        for failure in failures:
            db.errors[failure.kind] += 1
            if db.failing.get(failure.step) == failure.kind:
                log.debug(
                    "sqlite still failing",
                    collector=self.ctx.name,
                    db=db.config.name,
                    step=failure.step,
                    error=failure.kind,
                    detail=failure.message,
                )
                continue
            db.failing[failure.step] = failure.kind
            log.warning(
                "sqlite failed",
                collector=self.ctx.name,
                db=db.config.name,
                step=failure.step,
                error=failure.kind,
                detail=failure.message,
            )
        for step in succeeded:
            if db.failing.pop(step, None) is not None:
                log.info("sqlite recovered", collector=self.ctx.name, db=db.config.name, step=step)

    def _note_wal_files(self, db: Database, missing: bool) -> None:
        if missing != db.wal_files_missing:
            db.wal_files_missing = missing
            log.info(
                "sqlite wal files absent, database not opened"
                if missing
                else "sqlite wal files present again",
                collector=self.ctx.name,
                db=db.config.name,
            )

    def _judge_from_round(self, db: Database, reading: Reading) -> None:
        state = db.integrity
        if any(f.kind == "missing_file" for f in reading.failures):
            state.forget()  # a verdict about a file that is gone says nothing about the next
            return
        if reading.file_id is None:
            return
        if state.file_id is not None and state.file_id != reading.file_id:
            state.forget()  # replaced (restored from a backup): check the new file at once
        if any(f.kind == "malformed" for f in reading.failures):
            if state.ok is not False:
                state.ok, state.checked_at = False, self._clock()
                state.file_id, state.from_round = reading.file_id, True
        elif reading.up and not reading.failures and state.ok is False and state.from_round:
            # The round read cleanly what an earlier one found corrupt (repaired in place):
            # let a quick_check decide now rather than at the next interval.
            state.due_at = 0.0

    def _maybe_check(self, db: Database, reading: Reading) -> asyncio.Task[None] | None:
        state = db.integrity
        if not reading.up or state.task is not None or time.monotonic() < state.due_at:
            return None
        state.due_at = time.monotonic() + db.config.integrity_interval
        state.task = asyncio.create_task(self._integrity(db), name=f"{db.key} integrity")
        return state.task

    async def _integrity(self, db: Database) -> None:
        state = db.integrity
        state.cancel = cancel = Cancel()
        limit = db.config.integrity_timeout
        try:
            outcome = await asyncio.wait_for(
                self.ctx.blocking.run(f"{db.key} integrity", self._check, db.target, cancel),
                limit,
            )
        except TimeoutError:
            cancel.cancel()
            message = f"quick_check did not finish within {format_duration(limit)}; interrupted"
            outcome = IntegrityOutcome(None, failure=Failure(INTEGRITY, "other", message))
        except StillBlocked as exc:
            message = f"the previous check is still stuck ({exc})"
            outcome = IntegrityOutcome(None, failure=Failure(INTEGRITY, "locked", message))
        except asyncio.CancelledError:
            cancel.cancel()
            raise
        finally:
            state.cancel = None
            state.task = None
        self._apply_integrity(db, outcome)

    def _apply_integrity(self, db: Database, outcome: IntegrityOutcome) -> None:
        state = db.integrity
        if outcome.ok is False and db.failing.get(INTEGRITY) != "malformed":
            # The start of a streak: the problems themselves, once (the failure says how many).
            log.warning(
                "sqlite integrity problems",
                collector=self.ctx.name,
                db=db.config.name,
                problems=list(outcome.problems),
            )
        failures = [outcome.failure] if outcome.failure is not None else []
        self._account(db, failures, set() if failures else {INTEGRITY})
        if outcome.ok is None:
            if outcome.failure is not None and outcome.failure.kind == "locked":
                state.due_at = 0.0  # busy just then: try again at the next round
            return
        state.ok, state.checked_at = outcome.ok, self._clock()
        state.file_id, state.from_round = outcome.file_id, False


@collector(
    "sqlite",
    config=SqliteConfig,
    kind="poller",
    help="SQLite databases, read-only: size, WAL, integrity, row counts, duplicate keys, queries.",
)
def build(config: SqliteConfig, ctx: Context) -> SqliteCollector:
    return SqliteCollector(config, ctx)
