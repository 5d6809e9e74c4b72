"""The snmp collector against Debian's net-snmp snmpd on 127.0.0.1, its values checked against
what net-snmp's own snmpbulkwalk/snmpget read from the same agent in the same test."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric

from exporter.collector import Context
from exporter.collectors.snmp import SnmpCollector
from exporter.collectors.snmpber import Oid, format_oid
from exporter.collectors.snmpconfig import SnmpConfig
from exporter.collectors.snmpmodules import (
    ADMIN_STATES,
    HR_PROCESSOR_LOAD,
    HR_STORAGE_DESCR,
    HR_STORAGE_SIZE,
    HR_STORAGE_UNITS,
    IF_ADMIN_STATUS,
    IF_ALIAS,
    IF_DESCR,
    IF_HC_IN_OCTETS,
    IF_HC_OUT_OCTETS,
    IF_HIGH_SPEED,
    IF_IN_DISCARDS,
    IF_IN_ERRORS,
    IF_NAME,
    IF_OPER_STATUS,
    IF_OUT_DISCARDS,
    IF_OUT_ERRORS,
    OPER_STATES,
    SYS_NAME,
    SYS_UPTIME,
)
from exporter.threads import BlockingCalls
from tests.integration.conftest import Daemon, daemon_config
from tests.servers import stop_process
from tests.support import assert_no_secrets, promtool_lint, wait_for

pytestmark = pytest.mark.integration

# Greppable: none of these may turn up in a log, an error, a metric or the landing page.
COMMUNITY = "bw-Community-5e1d"
USER = "botwatch"
AUTH_KEY = "bw-AuthKey-77c3"
PRIV_KEY = "bw-PrivKey-a91f"
SECRETS = (COMMUNITY, AUTH_KEY, PRIV_KEY)
START_TIMEOUT = 20.0
COUNTERS = {
    IF_HC_IN_OCTETS: "botwatch_snmp_if_in_octets_total",
    IF_HC_OUT_OCTETS: "botwatch_snmp_if_out_octets_total",
    IF_IN_ERRORS: "botwatch_snmp_if_in_errors_total",
    IF_OUT_ERRORS: "botwatch_snmp_if_out_errors_total",
    IF_IN_DISCARDS: "botwatch_snmp_if_in_discards_total",
    IF_OUT_DISCARDS: "botwatch_snmp_if_out_discards_total",
}
_LINE = re.compile(r"^\.?(?P<oid>[\d.]+) = (?:(?P<type>[\w-]+): )?(?P<value>.*)$")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_value(kind: str | None, text: str) -> int | str:
    if kind in ("INTEGER", "Counter32", "Counter64", "Gauge32", "Timeticks"):
        # Timeticks print as "(18049) 0:03:00.49" unless -Ot; enums are numbers without MIBs.
        return int(text.split(")", maxsplit=1)[0].lstrip("(").split()[0])
    if kind == "Hex-STRING":
        return bytes.fromhex(text).decode("utf-8", "replace")
    if kind == "OID":
        return text.lstrip(".")
    return text[1:-1].replace('\\"', '"') if text.startswith('"') else text


class Snmpd:
    """net-snmp's snmpd in the foreground on 127.0.0.1: a v2c community and a v3 authPriv
    user (SHA/AES, created by `createUser` in the config file, which -C -c reads)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_udp_port()
        self.conf = root / "snmpd.conf"
        self.conf.write_text(
            f"agentAddress udp:127.0.0.1:{self.port}\n"
            f"rocommunity {COMMUNITY} 127.0.0.1\n"
            f'createUser {USER} SHA "{AUTH_KEY}" AES "{PRIV_KEY}"\n'
            f"rouser {USER} priv\n"
        )
        # snmpd and the net-snmp tools keep state (engine boots, users) here, not in
        # /var/lib/snmp.
        self.env = {**os.environ, "SNMP_PERSISTENT_DIR": str(root / "persist")}
        self.log = root / "snmpd.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    "snmpd",
                    "-f",
                    "-Lo",
                    "-C",
                    "-c",
                    str(self.conf),
                    "-M",
                    "/nonexistent",
                    "-m",
                    "",
                    "-I",
                    "-systemstats,smux",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        wait_for(self._ready, START_TIMEOUT, "snmpd to answer")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"snmpd exited: {self.log.read_text()}")
        return bool(self.get(SYS_NAME, check=False))

    def _tool(self, tool: str, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            [
                tool,
                "-v2c",
                "-c",
                COMMUNITY,
                "-On",
                "-M",
                "/nonexistent",
                "-m",
                "",
                "-t",
                "1",
                "-r",
                "1",
                self.address,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=check,
            env=self.env,
        )
        return done.stdout

    def walk(self, column: Oid) -> dict[int, int | str]:
        """`snmpbulkwalk` of one column: {index: value}."""
        rows: dict[int, int | str] = {}
        for line in self._tool("snmpbulkwalk", format_oid(column)).splitlines():
            if line.endswith("exists at this OID"):
                return {}  # nothing in the column: snmpbulkwalk then GETs the OID itself
            match = _LINE.match(line)
            assert match, line
            oid = tuple(int(p) for p in match["oid"].split("."))
            assert oid[: len(column)] == column and len(oid) == len(column) + 1, line
            rows[oid[-1]] = parse_value(match["type"], match["value"])
        return rows

    def get(self, oid: Oid, check: bool = True) -> int | str | None:
        out = self._tool("snmpget", format_oid(oid), check=check).strip()
        match = _LINE.match(out)
        return parse_value(match["type"], match["value"]) if match else None

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpd]:
    server = Snmpd(tmp_path_factory.mktemp("snmpd"))
    try:
        yield server
    finally:
        server.stop()


def v2c(snmpd: Snmpd, name: str = "local", **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "host": "127.0.0.1",
        "port": snmpd.port,
        "community": COMMUNITY,
        **more,
    }


def v3(snmpd: Snmpd, name: str = "local-v3", **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "host": "127.0.0.1",
        "port": snmpd.port,
        "version": "3",
        "user": USER,
        "auth_protocol": "SHA",
        "auth_key": AUTH_KEY,
        "priv_protocol": "AES",
        "priv_key": PRIV_KEY,
        **more,
    }


def collector(*targets: dict[str, Any], **options: Any) -> SnmpCollector:
    config = SnmpConfig.model_validate({"interval": "5s", "timeout": "3s", "targets": targets})
    return SnmpCollector(config, Context("snmp", Path("/nonexistent"), BlockingCalls()), **options)


async def one_round(snmp: SnmpCollector) -> list[Metric]:
    try:
        return await snmp.collect()
    finally:
        await snmp.close()


Series = dict[str, list[tuple[dict[str, str], float]]]


def series(families: list[Metric], target: str) -> Series:
    out: Series = {}
    for family in families:
        for s in family.samples:
            if s.labels.get("target") == target:
                out.setdefault(s.name, []).append((s.labels, float(s.value)))
    return out


def by_index(found: Series, name: str, key: str = "if_index") -> dict[int, float]:
    return {int(labels[key]): v for labels, v in found.get(name, [])}


def one(found: Series, name: str, **labels: str) -> float:
    matches = [v for s, v in found.get(name, []) if all(s.get(k) == w for k, w in labels.items())]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def states(found: Series, name: str) -> dict[int, str]:
    """The one state at 1 per interface."""
    out: dict[int, str] = {}
    for labels, v in found.get(name, []):
        if v == 1:
            assert int(labels["if_index"]) not in out
            out[int(labels["if_index"])] = labels["status"]
    return out


def assert_no_secret(*texts: object) -> None:
    assert_no_secrets(SECRETS, *texts)


async def test_if_mib_matches_snmpbulkwalk(snmpd: Snmpd) -> None:
    stable = (IF_NAME, IF_DESCR, IF_ALIAS, IF_OPER_STATUS, IF_ADMIN_STATUS, IF_HIGH_SPEED)
    before = {column: snmpd.walk(column) for column in (*stable, *COUNTERS)}
    families = await one_round(collector(v2c(snmpd, modules=["if_mib"])))
    after = {column: snmpd.walk(column) for column in (*stable, *COUNTERS)}
    for column in stable:
        assert before[column] == after[column], f"{format_oid(column)} changed during the test"
    found = series(families, "local")
    assert one(found, "botwatch_snmp_up") == 1
    names = before[IF_NAME]
    assert len(names) >= 1  # lo at least
    info = {int(labels["if_index"]): labels for labels, _ in found["botwatch_snmp_if_info"]}
    assert {i: labels["if_name"] for i, labels in info.items()} == names
    assert {i: labels["if_descr"] for i, labels in info.items()} == before[IF_DESCR]
    assert {i: labels["if_alias"] for i, labels in info.items()} == before[IF_ALIAS]
    oper = {i: OPER_STATES[int(v) - 1] for i, v in before[IF_OPER_STATUS].items()}
    assert states(found, "botwatch_snmp_if_oper_status") == oper
    admin = {i: ADMIN_STATES[int(v) - 1] for i, v in before[IF_ADMIN_STATUS].items()}
    assert states(found, "botwatch_snmp_if_admin_status") == admin
    speeds = {i: int(v) * 1_000_000 / 8 for i, v in before[IF_HIGH_SPEED].items()}
    assert by_index(found, "botwatch_snmp_if_speed_bytes") == speeds
    for column, name in COUNTERS.items():
        got = by_index(found, name)
        assert set(got) == set(before[column]), name
        for index, value in got.items():
            # lo's octets move while this test talks SNMP over it.
            assert int(before[column][index]) <= value <= int(after[column][index]), name
    assert one(found, "botwatch_snmp_errors_total", reason="malformed") == 0


async def test_system_and_host_resources(snmpd: Snmpd) -> None:
    uptime_before = snmpd.get(SYS_UPTIME)
    families = await one_round(collector(v2c(snmpd, modules=["system", "host_resources"])))
    uptime_after = snmpd.get(SYS_UPTIME)
    found = series(families, "local")
    assert isinstance(uptime_before, int) and isinstance(uptime_after, int)
    uptime = one(found, "botwatch_snmp_sys_uptime_seconds")
    assert uptime_before / 100 <= uptime <= uptime_after / 100
    assert one(found, "botwatch_snmp_sys_info", sys_name=str(snmpd.get(SYS_NAME))) == 1

    descr = snmpd.walk(HR_STORAGE_DESCR)
    units, sizes = snmpd.walk(HR_STORAGE_UNITS), snmpd.walk(HR_STORAGE_SIZE)
    size = by_index(found, "botwatch_snmp_storage_size_bytes", "storage_index")
    ram = next(i for i, d in descr.items() if d == "Physical memory")
    assert size[ram] == int(sizes[ram]) * int(units[ram])
    storage = {labels["storage"]: labels for labels, _ in found["botwatch_snmp_storage_used_bytes"]}
    assert storage["Physical memory"]["storage_type"] == "ram"
    assert storage["/"]["storage_type"] == "fixed_disk"
    loads = by_index(found, "botwatch_snmp_processor_load_ratio", "processor")
    agent_loads = snmpd.walk(HR_PROCESSOR_LOAD)
    assert set(loads) == set(agent_loads)
    assert all(0 <= v <= 1 for v in loads.values())
    # net-snmp serves hrProcessorLoad once it has a minute of history: until then the table
    # is empty, which is counted (once a round) as no_such_object.
    empty = 0 if agent_loads else 1
    assert one(found, "botwatch_snmp_errors_total", reason="no_such_object") == empty


async def test_v3_auth_priv_and_what_bad_credentials_give(
    snmpd: Snmpd, captured_logs: list[MutableMapping[str, Any]]
) -> None:
    snmp = collector(
        v3(snmpd),
        v3(snmpd, "wrong-auth-key", auth_key="bw-Wrong-AuthKey"),
        v3(snmpd, "unknown-user", user="nobody"),
        v3(snmpd, "wrong-priv-key", priv_key="bw-Wrong-PrivKey", timeout="0.5s", retries=0),
        v2c(snmpd, modules=["if_mib"]),
    )
    families = await one_round(snmp)
    good = series(families, "local-v3")
    assert one(good, "botwatch_snmp_up") == 1
    names = {
        int(labels["if_index"]): labels["if_name"] for labels, _ in good["botwatch_snmp_if_info"]
    }
    assert names == snmpd.walk(IF_NAME)
    for target, reason in (
        ("wrong-auth-key", "auth"),
        ("unknown-user", "auth"),
        ("wrong-priv-key", "timeout"),  # the agent cannot decrypt, so it does not answer
    ):
        found = series(families, target)
        assert one(found, "botwatch_snmp_up") == 0, target
        assert one(found, "botwatch_snmp_errors_total", reason=reason) == 1, target
        assert "botwatch_snmp_if_info" not in found
    failed = {e["target"]: e for e in captured_logs if e["event"] == "snmp target failed"}
    assert failed["wrong-auth-key"]["error"] == "WrongDigest: Wrong SNMP PDU digest"
    assert failed["unknown-user"]["error"] == "UnknownUserName: Unknown USM user"
    # The v3 user and the v2c community share an engine and their round.
    assert one(series(families, "local"), "botwatch_snmp_up") == 1
    assert_no_secret(captured_logs, [s for f in families for s in f.samples])


async def test_v2c_through_pysnmp_reads_the_same(snmpd: Snmpd) -> None:
    targets = [v2c(snmpd, modules=["if_mib", "system"])]
    native = series(await one_round(collector(*targets)), "local")
    pysnmp = series(await one_round(collector(*targets, v2c_via_pysnmp=True)), "local")
    for name in ("botwatch_snmp_if_info", "botwatch_snmp_if_oper_status", "botwatch_snmp_sys_info"):
        assert sorted(map(str, native[name])) == sorted(map(str, pysnmp[name]))


async def test_a_dead_port_is_a_timeout_within_the_target_timeout(snmpd: Snmpd) -> None:
    snmp = collector(v2c(snmpd, "dead", port=free_udp_port(), timeout="0.5s"))
    started = time.monotonic()
    families = await one_round(snmp)
    assert time.monotonic() - started < 1.0
    found = series(families, "dead")
    assert one(found, "botwatch_snmp_up") == 0
    assert one(found, "botwatch_snmp_errors_total", reason="timeout") == 1
    assert 0.5 <= one(found, "botwatch_snmp_scrape_duration_seconds") < 1.0


async def test_a_wrong_community_is_a_timeout(
    snmpd: Snmpd, captured_logs: list[MutableMapping[str, Any]]
) -> None:
    snmp = collector(v2c(snmpd, "wrong", community="bw-Not-The-Community", timeout="0.5s"))
    found = series(await one_round(snmp), "wrong")
    assert one(found, "botwatch_snmp_up") == 0
    assert one(found, "botwatch_snmp_errors_total", reason="timeout") == 1
    (failed,) = [e for e in captured_logs if e["event"] == "snmp target failed"]
    assert "wrong community" in failed["error"]
    assert "bw-Not-The-Community" not in repr(captured_logs)


async def test_a_dead_target_does_not_cost_the_good_one_anything(snmpd: Snmpd) -> None:
    snmp = collector(
        v2c(snmpd, "dead", port=free_udp_port(), timeout="1s"),
        v2c(snmpd, modules=["if_mib", "system", "host_resources"]),
    )
    started = time.monotonic()
    families = await one_round(snmp)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 1.8
    good = series(families, "local")
    assert one(good, "botwatch_snmp_up") == 1
    assert one(good, "botwatch_snmp_scrape_duration_seconds") < 0.5
    names = {
        int(labels["if_index"]): labels["if_name"] for labels, _ in good["botwatch_snmp_if_info"]
    }
    assert names == snmpd.walk(IF_NAME)
    assert "botwatch_snmp_sys_uptime_seconds" in good
    assert "botwatch_snmp_storage_size_bytes" in good
    assert one(series(families, "dead"), "botwatch_snmp_up") == 0


def test_the_daemon_serves_snmp_and_promtool_accepts_the_scrape(
    snmpd: Snmpd,
    tmp_path: Path,
    daemon: Callable[..., Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOTWATCH_TEST_SNMP_COMMUNITY", COMMUNITY)
    monkeypatch.setenv("BOTWATCH_TEST_SNMP_AUTH", AUTH_KEY)
    monkeypatch.setenv("BOTWATCH_TEST_SNMP_PRIV", PRIV_KEY)
    config = daemon_config(
        tmp_path,
        collectors={
            "host": {"enabled": False},
            "snmp": {
                "interval": "1s",
                "timeout": "900ms",
                "tables": [
                    {
                        "name": "ucd_load",
                        "index_label": "la",
                        "table": [
                            {
                                "oid": "1.3.6.1.4.1.2021.10.1.2",
                                "metric": "la_name",
                                "type": "label",
                            },
                            {
                                "oid": "1.3.6.1.4.1.2021.10.1.3",
                                "metric": "load_average",
                                "help": "UCD-SNMP laLoad.",
                            },
                        ],
                    }
                ],
                "targets": [
                    {
                        **v2c(snmpd),
                        "community": "${BOTWATCH_TEST_SNMP_COMMUNITY}",
                        "modules": ["if_mib", "system", "host_resources", "ucd_load"],
                    },
                    {
                        **v3(snmpd),
                        "auth_key": "${BOTWATCH_TEST_SNMP_AUTH}",
                        "priv_key": "${BOTWATCH_TEST_SNMP_PRIV}",
                    },
                    {**v2c(snmpd, "dead"), "port": free_udp_port(), "timeout": "300ms"},
                ],
            },
        },
    )
    d = daemon(config)
    wait_for(
        lambda: (
            d.sample("botwatch_snmp_up", target="local") == 1
            and d.sample("botwatch_snmp_up", target="local-v3") == 1
        ),
        20,
        "both live targets up",
    )
    body = d.metrics()
    assert promtool_lint(body) == ""
    assert d.sample("botwatch_collector_up", collector="snmp") == 1
    assert d.sample("botwatch_snmp_up", target="dead") == 0
    assert (d.sample("botwatch_snmp_load_average", target="local", la_name="Load-1") or 0) >= 0
    assert d.sample("botwatch_snmp_if_speed_bytes", target="local-v3", if_name="lo") is not None
    wait_for(lambda: d.events("snmp target failed"), 10, "the dead target's warning")
    (failed,) = d.events("snmp target failed")
    assert (failed["target"], failed["reason"]) == ("dead", "timeout")
    _, landing, _ = d.get("/")
    assert_no_secret(body, landing, "".join(d.raw))
