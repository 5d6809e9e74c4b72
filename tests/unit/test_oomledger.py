"""oomledger: cgroup counters kept monotonic across re-creation, kernel kills under label
caps, their JSON round trip and their families (pure)."""

from __future__ import annotations

import json

from exporter.collectors.oomledger import (
    FORGET_AFTER,
    OTHER,
    CgroupLedger,
    CgroupReading,
    KernelLedger,
    cgroup_families,
    kernel_families,
)
from exporter.collectors.oomparse import Kill
from tests.streams import value

T0 = 1_795_000_000.0
BOT = "/system.slice/alphaengine-bot.service"
WEB = "/system.slice/alphaengine-web.service"
SCOPE = "/system.slice/docker-" + "ab" * 32 + ".scope"


def v2(ino: int, oom: int, oom_kill: int) -> CgroupReading:
    return CgroupReading(ino, {"oom": oom, "oom_kill": oom_kill})


def kills(ledger: CgroupLedger, path: str) -> float | None:
    return value(cgroup_families(ledger), "botwatch_cgroup_oom_kills_total", cgroup=path)


def ooms(ledger: CgroupLedger, path: str) -> float | None:
    return value(cgroup_families(ledger), "botwatch_cgroup_oom_total", cgroup=path)


def test_a_first_sighting_starts_from_the_raw_value_and_growth_is_added() -> None:
    ledger = CgroupLedger()
    assert ledger.update({BOT: v2(100, 2, 3), WEB: v2(101, 0, 0)}, T0)
    assert (kills(ledger, BOT), ooms(ledger, BOT), kills(ledger, WEB)) == (3, 2, 0)
    assert not ledger.update({BOT: v2(100, 2, 3), WEB: v2(101, 0, 0)}, T0 + 15)
    assert ledger.update({BOT: v2(100, 4, 5), WEB: v2(101, 0, 0)}, T0 + 30)
    assert (kills(ledger, BOT), ooms(ledger, BOT)) == (5, 4)


def test_a_recreated_cgroup_adds_all_of_its_raw_value() -> None:
    ledger = CgroupLedger()
    ledger.update({BOT: v2(100, 4, 5)}, T0)
    # Same inode unknown (0), raw below the last: a new cgroup.
    ledger.update({BOT: v2(0, 1, 1)}, T0 + 15)
    assert (kills(ledger, BOT), ooms(ledger, BOT)) == (6, 5)
    # A new inode says so even when the new cgroup already counted more than the old one.
    ledger.update({BOT: v2(200, 1, 1)}, T0 + 30)  # an inode where none was known: no change
    assert kills(ledger, BOT) == 6
    ledger.update({BOT: v2(300, 3, 7)}, T0 + 45)
    assert (kills(ledger, BOT), ooms(ledger, BOT)) == (13, 8)
    # The same inode again: only the growth.
    ledger.update({BOT: v2(300, 3, 8)}, T0 + 60)
    assert kills(ledger, BOT) == 14


def test_a_vanished_cgroup_keeps_its_series_for_an_hour_then_is_forgotten() -> None:
    ledger = CgroupLedger()
    ledger.update({BOT: v2(100, 1, 2), WEB: v2(101, 0, 1)}, T0)
    assert ledger.update({WEB: v2(101, 0, 1)}, T0 + 15) is False
    assert kills(ledger, BOT) == 2
    # Back within the hour as a new cgroup (unit restarted): counting goes on.
    ledger.update({BOT: v2(102, 1, 1), WEB: v2(101, 0, 1)}, T0 + 600)
    assert kills(ledger, BOT) == 3
    ledger.update({WEB: v2(101, 0, 1)}, T0 + 600 + FORGET_AFTER)
    assert kills(ledger, BOT) == 3
    assert ledger.update({WEB: v2(101, 0, 1)}, T0 + 601 + FORGET_AFTER)
    assert kills(ledger, BOT) is None
    assert kills(ledger, WEB) == 1


def test_the_json_round_trip_and_a_restart() -> None:
    ledger = CgroupLedger()
    ledger.update(
        {BOT: v2(100, 1, 2), WEB: v2(101, 0, 3), SCOPE: CgroupReading(102, {"oom_kill": 1})}, T0
    )
    restored = CgroupLedger.from_json(json.loads(json.dumps(ledger.to_json())))
    assert restored == ledger
    # While botwatch was away: BOT grew (same cgroup), WEB was recreated and counted less
    # than before, SCOPE was recreated with an inode nobody can tell apart.
    restored.update(
        {BOT: v2(100, 2, 4), WEB: v2(101, 0, 1), SCOPE: CgroupReading(0, {"oom_kill": 5})}, T0 + 60
    )
    assert (kills(restored, BOT), kills(restored, WEB), kills(restored, SCOPE)) == (4, 4, 5)


def test_v1_cgroups_have_no_oom_series_and_labels_come_from_the_path() -> None:
    ledger = CgroupLedger()
    ledger.update({SCOPE: CgroupReading(5, {"oom_kill": 2})}, T0)
    fams = cgroup_families(ledger)
    assert ooms(ledger, SCOPE) is None
    assert (
        value(
            fams,
            "botwatch_cgroup_oom_kills_total",
            cgroup=SCOPE,
            unit="docker-" + "ab" * 32 + ".scope",
            container="ab" * 6,
        )
        == 2
    )


def test_kernel_kills_fold_past_the_cap_into_other() -> None:
    ledger = KernelLedger(max_values=2)
    for kill in [
        Kill("python3", BOT),
        Kill("node", SCOPE),
        Kill("python3", ""),
        Kill("java", BOT),  # process past the cap
        Kill("python3", WEB),  # cgroup past the cap
        Kill("ruby", "/x.service"),  # both
        Kill("node", ""),
    ]:
        ledger.count(kill)
    assert dict(ledger.kills) == {
        ("python3", BOT): 1,
        ("node", SCOPE): 1,
        ("python3", ""): 1,
        (OTHER, BOT): 1,
        ("python3", OTHER): 1,
        (OTHER, OTHER): 1,
        ("node", ""): 1,
    }
    assert dict(ledger.overflow) == {"process": 2, "cgroup": 2}
    # The admitted values are kept: a restart goes on with the same ones.
    ledger.seq, ledger.boot_id, ledger.lost, ledger.malformed = 2344, "boot", 3, 1
    restored = KernelLedger.from_json(json.loads(json.dumps(ledger.to_json())), max_values=2)
    assert restored == ledger
    restored.count(Kill("java", BOT))
    assert restored.kills[OTHER, BOT] == 2


def test_kernel_families() -> None:
    ledger = KernelLedger(max_values=1)
    ledger.count(Kill("python3", BOT))
    ledger.count(Kill("node", BOT))
    ledger.lost, ledger.malformed = 4, 2
    fams = kernel_families(ledger, up=True)
    name = "botwatch_oom_kills_total"
    assert value(fams, name, source="kernel", process="python3", cgroup=BOT) == 1
    assert value(fams, name, source="kernel", process=OTHER, cgroup=BOT) == 1
    assert value(fams, "botwatch_oom_label_overflow_total", label="process") == 1
    assert value(fams, "botwatch_oom_label_overflow_total", label="cgroup") == 0
    assert value(fams, "botwatch_oom_kernel_log_up") == 1
    assert value(fams, "botwatch_oom_kernel_log_lost_total") == 4
    assert value(fams, "botwatch_oom_kernel_log_malformed_total") == 2
    assert value(kernel_families(KernelLedger(1), up=False), "botwatch_oom_kernel_log_up") == 0
