"""oomparse: cgroup counter files, cgroup path labels, kernel log records and the decoder
that turns them into kills (pure, on the fixtures in tests/fixtures/oom)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.collectors.oomparse import (
    MAX_PENDING_VICTIMS,
    CgroupLabels,
    Kill,
    KillAssembler,
    Killed,
    KmsgDecoder,
    KmsgRecord,
    MalformedRecord,
    OomContext,
    cgroup_labels,
    memory_events_counters,
    oom_control_counters,
    oom_event,
    parse_flat_keyed,
    parse_record,
    unescape,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "oom"
KMSG = FIXTURES / "kmsg"
DOCKER_ID = "f061fdec4bda17fed36f8af5199e89c4be21ccee1f5b45aa904b0ffd4f20adc9"
LIBPOD_ID = "ff631fd9b06a838b910b0b4d4586f42904e06f2d9c832b952ea3a2a4a18205f6"
CGROUPFS_ID = "1dd2ed91fd56c06df2093e41e6f229c0ef3b50009f1e23569b1bc17adc74d6c2"
BOT = "/system.slice/alphaengine-bot.service"
PYTHON_KILL = Kill("python3", BOT)
NODE_KILL = Kill("node", f"/system.slice/docker-{DOCKER_ID}.scope")
FIRST_SEQ, LAST_SEQ = 2280, 2344


def kmsg(*parts: str) -> bytes:
    return b"".join((KMSG / part).read_bytes() for part in parts)


EVERYTHING = ("1-boot", "2-memcg-oom", "3-global-oom")


# cgroup files ---------------------------------------------------------------------------


def test_memory_events_of_cgroup_v2() -> None:
    text = (FIXTURES / f"v2/fs/cgroup{BOT}/memory.events").read_text()
    assert memory_events_counters(text) == {"oom": 2, "oom_kill": 2}
    # Kernels before 4.13 have no oom_kill line; before 5.19 no oom_group_kill.
    assert memory_events_counters("low 0\nhigh 0\nmax 3\noom 1\n") == {"oom": 1}


def test_oom_control_of_cgroup_v1() -> None:
    text = (FIXTURES / f"v1/fs/cgroup/memory/docker/{CGROUPFS_ID}/memory.oom_control").read_text()
    assert oom_control_counters(text) == {"oom_kill": 2}
    assert parse_flat_keyed(text) == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 2}
    assert oom_control_counters("oom_kill_disable 0\nunder_oom 1\n") == {}


def test_flat_keyed_skips_what_is_not_a_count() -> None:
    assert parse_flat_keyed("oom 1\n\ngarbage\noom_kill -3\nmax  7 \nx y\n") == {
        "oom": 1,
        "max": 7,
    }


@pytest.mark.parametrize(
    ("path", "unit", "container"),
    [
        (BOT, "alphaengine-bot.service", ""),
        ("/system.slice", "system.slice", ""),
        ("/", "", ""),
        ("/user.slice/user-1000.slice/user@1000.service", "user@1000.service", ""),
        ("/system.slice/var-lib-docker.mount", "var-lib-docker.mount", ""),
        (f"/system.slice/docker-{DOCKER_ID}.scope", f"docker-{DOCKER_ID}.scope", DOCKER_ID[:12]),
        (f"/machine.slice/libpod-{LIBPOD_ID}.scope", f"libpod-{LIBPOD_ID}.scope", LIBPOD_ID[:12]),
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice"
            f"/cri-containerd-{DOCKER_ID}.scope",
            f"cri-containerd-{DOCKER_ID}.scope",
            DOCKER_ID[:12],
        ),
        (f"/docker/{CGROUPFS_ID}", "", CGROUPFS_ID[:12]),
        (f"/libpod_parent/libpod-{LIBPOD_ID}", "", LIBPOD_ID[:12]),
        # conmon watches a container; it is not one.
        (f"/machine.slice/libpod-conmon-{LIBPOD_ID}.scope", f"libpod-conmon-{LIBPOD_ID}.scope", ""),
        # A 64-hex directory elsewhere, a short id, upper case: not a container.
        (f"/system.slice/{CGROUPFS_ID}", "", ""),
        (f"/docker/{CGROUPFS_ID[:40]}", "", ""),
        (f"/docker/{CGROUPFS_ID.upper()}", "", ""),
        ("/init.scope", "init.scope", ""),
        ("/kubepods/besteffort/pod1a2b", "", ""),
    ],
)
def test_cgroup_labels(path: str, unit: str, container: str) -> None:
    assert cgroup_labels(path) == CgroupLabels(unit, container)


# kernel log records -----------------------------------------------------------------------


def test_a_record() -> None:
    record = parse_record(b"3,2315,8253101411,-;Memory cgroup out of memory: Killed process 1")
    assert record == KmsgRecord(
        3, 2315, 8253101411, "Memory cgroup out of memory: Killed process 1"
    )
    assert record.facility == 0
    # Newer kernels may add header fields (caller id); flags may be "c" (continued).
    assert parse_record(b"6,7,8,c,caller=T12;x").message == "x"
    assert parse_record(b"30,9,10,-;systemd[1]: up").facility == 3


@pytest.mark.parametrize(
    ("line", "why", "seq"),
    [
        (b"not a record at all", "not a kernel log record", None),
        (b"6,12,34;missing flags", "not a kernel log record", None),
        (b"6,twelve,34,-;seq is not a number", "not a kernel log record", None),
        (b"6,12,34,-", "not a kernel log record", None),
        (b"", "not a kernel log record", None),
        (b"6,12,34,-;raw \xff\xfe bytes", "not UTF-8", 12),
    ],
)
def test_malformed_records(line: bytes, why: str, seq: int | None) -> None:
    with pytest.raises(MalformedRecord, match=why) as caught:
        parse_record(line)
    assert caught.value.seq == seq
    assert "\n" not in str(caught.value)


def test_unescape_reads_utf8_names_and_keeps_control_characters_escaped() -> None:
    assert unescape(b"caf\\xc3\\xa9") == "café"
    assert unescape(b"a\\x0ab\\x09c\\x5cd") == "a\\x0ab\\x09c\\d"
    assert unescape(b"bad \\xff byte") == "bad \\xff byte"


def record(message: str, prio: int = 6) -> KmsgRecord:
    return KmsgRecord(prio, 1, 1, message)


@pytest.mark.parametrize(
    ("message", "prio", "event"),
    [
        (
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
            f"oom_memcg={BOT},task_memcg={BOT},task=python3,pid=48213,uid=998",
            6,
            OomContext(48213, BOT),
        ),
        (
            "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0-1,3,"
            "global_oom,task_memcg=/odd,path/with,commas,task=a,b,pid=7,uid=0",
            6,
            OomContext(7, "/odd,path/with,commas"),
        ),
        (
            "Memory cgroup out of memory: Killed process 48213 (python3) total-vm:1353244kB, "
            "anon-rss:520600kB, file-rss:0kB, shmem-rss:0kB, UID:998 pgtables:1208kB "
            "oom_score_adj:0",
            3,
            Killed(48213, "python3"),
        ),
        ("Out of memory: Killed process 52311 (node) total-vm:4804932kB", 3, Killed(52311, "node")),
        (
            "Out of memory (oom_kill_allocating_task): Killed process 9 (java) total-vm:1kB",
            3,
            Killed(9, "java"),
        ),
        # Linux 4.x: the kill on its own record, without a prefix.
        (
            "Killed process 4321 (gunicorn) total-vm:812340kB, anon-rss:401220kB, "
            "file-rss:0kB, shmem-rss:0kB",
            3,
            Killed(4321, "gunicorn"),
        ),
        ("Killed process 12 (old)", 3, Killed(12, "old")),
        ("Killed process 13 (a (b) c) total-vm:1kB", 3, Killed(13, "a (b) c")),
        # Not kills.
        ("python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0", 4, None),
        (
            "Memory cgroup out of memory: Kill process 4321 (x) score 1000 or sacrifice child",
            3,
            None,
        ),
        ("oom_reaper: reaped process 48213 (python3), now anon-rss:0kB", 6, None),
        ("Tasks state (memory values in pages):", 6, None),
        (
            "[  48213]   998 48213   338311   130150  1236992        0             0 python3",
            6,
            None,
        ),
        ("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),task=x,pid=1,uid=0", 6, None),
        ("lowmemorykiller: Killed process 1 (x)", 3, None),
        # Written to /dev/kmsg by a user-space process (facility user): not the kernel's.
        ("Killed process 1 (systemd) total-vm:0kB", 12, None),
    ],
)
def test_oom_events(message: str, prio: int, event: OomContext | Killed | None) -> None:
    assert oom_event(record(message, prio)) == event


def test_a_process_name_the_kernel_escaped() -> None:
    parsed = parse_record(b"3,1,1,-;Out of memory: Killed process 14 (caf\\xc3\\xa9) total-vm:1kB")
    assert oom_event(parsed) == Killed(14, "café")


def test_the_assembler_joins_cgroup_and_kill_by_pid() -> None:
    assembler = KillAssembler()
    assert assembler.feed(OomContext(10, "/a.service")) is None
    assert assembler.feed(OomContext(11, "/b.service")) is None
    assert assembler.feed(None) is None
    assert assembler.feed(Killed(11, "b")) == Kill("b", "/b.service")
    assert assembler.feed(Killed(10, "a")) == Kill("a", "/a.service")
    # Each context is used once; a kill nothing announced has no cgroup.
    assert assembler.feed(Killed(10, "a")) == Kill("a", "")
    # Contexts whose kill never came are not kept forever.
    for pid in range(1000, 1000 + MAX_PENDING_VICTIMS + 1):
        assembler.feed(OomContext(pid, f"/{pid}"))
    assert assembler.feed(Killed(1000, "x")) == Kill("x", "")
    assert assembler.feed(Killed(1001, "y")) == Kill("y", "/1001")


# the decoder ------------------------------------------------------------------------------


def test_a_new_boot_counts_everything_and_the_records_before_the_buffer_as_lost() -> None:
    decoder = KmsgDecoder(after=-1)
    decoder.feed(kmsg(*EVERYTHING))
    batch = decoder.take()
    assert batch is not None
    assert batch.kills == [PYTHON_KILL, NODE_KILL]
    assert batch.lost == FIRST_SEQ  # seq 0 .. 2279 were overwritten before botwatch read them
    assert [m.split(":")[0] for m in batch.malformed] == ["not UTF-8", "not a kernel log record"]
    assert batch.last_seq == LAST_SEQ
    assert batch.last_ok is True
    assert decoder.take() is None


def test_a_first_start_counts_only_what_comes_after_the_end() -> None:
    decoder = KmsgDecoder(after=None)
    decoder.feed(kmsg("1-boot", "2-memcg-oom"))
    decoder.caught_up()
    batch = decoder.take()
    assert batch is not None and batch.kills == [] and batch.malformed == [] and batch.lost == 0
    assert batch.last_seq == 2318
    decoder.feed(kmsg("3-global-oom"))
    batch = decoder.take()
    assert batch is not None
    assert batch.kills == [NODE_KILL]
    assert len(batch.malformed) == 2
    assert batch.lost == 0


def test_an_empty_log_at_a_first_start_counts_from_the_first_record() -> None:
    decoder = KmsgDecoder(after=None)
    decoder.caught_up()
    assert decoder.take() is None
    decoder.feed(kmsg("3-global-oom"))
    batch = decoder.take()
    assert batch is not None and batch.kills == [NODE_KILL] and batch.lost == 0


def test_a_resume_skips_what_was_counted_and_still_learns_the_victims_cgroup() -> None:
    # Stopped between the oom-kill record (2314) and the kill (2315).
    decoder = KmsgDecoder(after=2314)
    decoder.feed(kmsg(*EVERYTHING))
    batch = decoder.take()
    assert batch is not None
    assert batch.kills == [PYTHON_KILL, NODE_KILL]
    assert batch.lost == 0
    assert len(batch.malformed) == 2
    # After the last record: nothing again, and the malformed ones are not counted twice.
    decoder = KmsgDecoder(after=LAST_SEQ)
    decoder.feed(kmsg(*EVERYTHING))
    assert decoder.take() is None


def test_a_resume_after_the_buffer_wrapped_counts_the_overwritten_records_as_lost() -> None:
    decoder = KmsgDecoder(after=2200)
    decoder.feed(kmsg(*EVERYTHING))
    batch = decoder.take()
    assert batch is not None and batch.lost == FIRST_SEQ - 2200 - 1
    assert batch.kills == [PYTHON_KILL, NODE_KILL]


def test_overwritten_while_reading_is_lost_and_repeated_records_count_once() -> None:
    decoder = KmsgDecoder(after=-1)
    decoder.feed(b"6,0,1,-;boot\n6,1,2,-;x\n")
    decoder.feed(b"6,9,3,-;after EPIPE the position jumps\n6,9,3,-;again\n6,4,2,-;older\n")
    batch = decoder.take()
    assert batch is not None and batch.lost == 7 and batch.last_seq == 9


def test_records_split_across_reads_and_over_long_lines() -> None:
    data = kmsg(*EVERYTHING)
    decoder = KmsgDecoder(after=-1)
    for i in range(0, len(data), 7):
        decoder.feed(data[i : i + 7])
    batch = decoder.take()
    assert batch is not None and batch.kills == [PYTHON_KILL, NODE_KILL]

    decoder = KmsgDecoder(after=-1)
    decoder.feed(b"6,0,1,-;" + b"x" * (KmsgDecoder.MAX_LINE + 1))
    decoder.feed(b"more of the same line\n6,1,2,-;Killed process 5 (ok)\n")
    batch = decoder.take()
    assert batch is not None
    assert batch.kills == [Kill("ok", "")]
    assert len(batch.malformed) == 1 and batch.malformed[0].startswith("record over")


def test_malformed_streaks_end_with_a_good_record() -> None:
    decoder = KmsgDecoder(after=-1)
    decoder.feed(b"garbage\n")
    batch = decoder.take()
    assert batch is not None and batch.last_ok is False and batch.last_seq == -1
    decoder.feed(b"6,0,1,-;fine\n")
    batch = decoder.take()
    assert batch is not None and batch.last_ok is True and batch.malformed == []
