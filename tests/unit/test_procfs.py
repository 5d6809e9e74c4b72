"""Table tests of the pure /proc parsers (no files, no psutil)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.collectors.procfs import Mount, parse_loadavg, parse_mounts, parse_vmstat

FIXTURE_PROC = Path(__file__).parent.parent / "fixtures" / "host" / "proc"


def mount(device: str, mountpoint: str, fstype: str, options: str) -> Mount:
    return Mount(device, mountpoint, fstype, frozenset(options.split(",")))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", [], id="empty"),
        pytest.param(
            "/dev/sda1 / ext4 rw,relatime 0 0\n",
            [mount("/dev/sda1", "/", "ext4", "rw,relatime")],
            id="plain",
        ),
        pytest.param(
            "/dev/sdc1 /media/usb\\040backup ext4 rw 0 0\n",
            [mount("/dev/sdc1", "/media/usb backup", "ext4", "rw")],
            id="escaped-space",
        ),
        pytest.param(
            "/dev/sdc1 /mnt/a\\011b\\012c ext4 rw 0 0\n",
            [mount("/dev/sdc1", "/mnt/a\tb\nc", "ext4", "rw")],
            id="escaped-tab-and-newline",
        ),
        pytest.param(
            # \134 is the backslash itself: what follows it is literal text, not an escape.
            "/dev/sdc1 /mnt/back\\134040slash ext4 rw 0 0\n",
            [mount("/dev/sdc1", "/mnt/back\\040slash", "ext4", "rw")],
            id="escaped-backslash",
        ),
        pytest.param(
            "//nas/share\\040two /mnt/share cifs rw 0 0\n",
            [mount("//nas/share two", "/mnt/share", "cifs", "rw")],
            id="escaped-device",
        ),
        pytest.param(
            "/dev/sdd1 /data ext4 rw 0 0\n"
            "/dev/sde1 /other ext4 rw 0 0\n"
            "/dev/mapper/vg0-data /data xfs ro,noatime 0 0\n",
            [
                mount("/dev/sde1", "/other", "ext4", "rw"),
                mount("/dev/mapper/vg0-data", "/data", "xfs", "ro,noatime"),
            ],
            id="duplicate-later-wins-and-moves-last",
        ),
        pytest.param(
            "garbage\n/dev/sda1 /\n/dev/sda1 / ext4\n\n/dev/sdb1 /b ext4 rw 0 0\n",
            [mount("/dev/sdb1", "/b", "ext4", "rw")],
            id="short-lines-skipped",
        ),
        pytest.param(
            "/dev/sdb1 /b ext4 rw\n",
            [mount("/dev/sdb1", "/b", "ext4", "rw")],
            id="no-dump-pass-fields",
        ),
        pytest.param(
            "  /dev/sdb1\t/b  ext4   rw 0 0",
            [mount("/dev/sdb1", "/b", "ext4", "rw")],
            id="extra-whitespace-no-final-newline",
        ),
    ],
)
def test_parse_mounts(text: str, expected: list[Mount]) -> None:
    assert parse_mounts(text) == expected


@pytest.mark.parametrize(
    ("options", "readonly"),
    [
        ("ro,relatime", True),
        ("rw,relatime", False),
        ("rw,errors=remount-ro", False),  # "ro" inside another option is not read-only
        ("relatime,ro", True),
    ],
)
def test_mount_readonly(options: str, readonly: bool) -> None:
    (parsed,) = parse_mounts(f"/dev/sda1 / ext4 {options} 0 0\n")
    assert parsed.readonly is readonly


def test_parse_mounts_fixture() -> None:
    mounts = {m.mountpoint: m for m in parse_mounts((FIXTURE_PROC / "1" / "mounts").read_text())}
    assert len(mounts) == 17  # 18 lines, /srv/data twice
    assert mounts["/srv/data"] == mount(
        "/dev/mapper/vg0-data",
        "/srv/data",
        "xfs",
        "rw,noatime,attr2,inode64,logbufs=8,logbsize=32k,noquota",
    )
    assert mounts["/media/usb backup"].device == "/dev/sdc1"
    assert mounts["/srv/snapshots"].readonly
    assert not mounts["/"].readonly
    assert mounts["/mnt/archive"].device == "nas01:/export/archive"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.42 0.57 0.61 2/613 48213\n", (0.42, 0.57, 0.61)),
        ("0.00 0.00 0.00 1/83 5287", (0.0, 0.0, 0.0)),
        ("12.50 8.01 3.99 17/1024 999999\n", (12.5, 8.01, 3.99)),
        ("1.5 2.5 3.5", (1.5, 2.5, 3.5)),
    ],
)
def test_parse_loadavg(text: str, expected: tuple[float, float, float]) -> None:
    assert parse_loadavg(text) == expected


@pytest.mark.parametrize("text", ["", "0.42 0.57\n", "0.42 0.57 x 1/2 3\n"])
def test_parse_loadavg_rejects_short_or_garbled(text: str) -> None:
    with pytest.raises(ValueError):
        parse_loadavg(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", {}, id="empty"),
        pytest.param(
            "nr_free_pages 296133\noom_kill 3\n",
            {"nr_free_pages": 296133, "oom_kill": 3},
            id="plain",
        ),
        pytest.param("oom_kill 0", {"oom_kill": 0}, id="zero-no-final-newline"),
        pytest.param(
            "oom_kill\nbogus x\n\npswpin 7\n",
            {"pswpin": 7},
            id="short-and-non-numeric-lines-skipped",
        ),
        pytest.param("oom_kill 3 \n", {"oom_kill": 3}, id="trailing-space"),
    ],
)
def test_parse_vmstat(text: str, expected: dict[str, int]) -> None:
    assert parse_vmstat(text) == expected


def test_parse_vmstat_without_oom_kill() -> None:
    # Kernels before 4.13 have no oom_kill line: the collector then omits the counter.
    assert parse_vmstat("pgfault 10\npgmajfault 2\n").get("oom_kill") is None


def test_parse_vmstat_fixture() -> None:
    parsed = parse_vmstat((FIXTURE_PROC / "vmstat").read_text())
    assert parsed["oom_kill"] == 3
    assert parsed["pswpin"] == 51734
    assert parsed["numa_hit"] == 9188407213
