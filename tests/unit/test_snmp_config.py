"""`collectors.snmp`: one line per problem with its key path, secrets never echoed, defaults
that fit the collector's timeout, and no pysnmp import for validating a config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.collectors.snmpconfig import SnmpConfig, TargetConfig
from exporter.config import load_config
from tests.support import REPO

SECRET = "s3cret-Community-77"
SHORT_KEY = "sh0rt"
PREFIX = "{f}: collectors.snmp"


def section(body: str) -> str:
    return "collectors:\n  snmp:\n" + body


CASES: list[tuple[str, str, list[str]]] = [
    (
        "community-missing",
        "    targets:\n      - {host: 192.0.2.1}\n",
        [
            PREFIX + '.targets[0].community: required with version 2c (e.g. "${SNMP_COMMUNITY}") '
            "(got None)"
        ],
    ),
    (
        "short-key-from-env",
        "    targets:\n      - {host: 192.0.2.1, version: 3, user: bw, auth_protocol: SHA,"
        ' auth_key: "${SNMP_TEST_KEY}"}\n',
        [
            PREFIX + ".targets[0].auth_key: must be at least 8 characters "
            "(got the value of $SNMP_TEST_KEY)"
        ],
    ),
    (
        "key-without-protocol",
        "    targets:\n      - {host: 192.0.2.1, version: 3, user: bw,"
        " priv_key: '${SNMP_TEST_SECRET}'}\n",
        [PREFIX + ".targets[0].priv_protocol: priv_protocol and priv_key go together (got None)"],
    ),
    (
        "priv-without-auth",
        "    targets:\n      - {host: 192.0.2.1, version: 3, user: bw, priv_protocol: AES,"
        " priv_key: '${SNMP_TEST_SECRET}'}\n",
        [
            PREFIX + ".targets[0].priv_protocol: needs auth_protocol (there is no noAuthPriv) "
            "(got 'AES')"
        ],
    ),
    (
        "v3-with-community",
        "    targets:\n      - {host: 192.0.2.1, version: 3, user: bw,"
        " community: '${SNMP_TEST_SECRET}'}\n",
        [
            PREFIX + ".targets[0].community: only with version 2c (version 3 uses user and "
            "keys) (got the value of $SNMP_TEST_SECRET)"
        ],
    ),
    (
        "v2c-with-user",
        "    targets:\n      - {host: 192.0.2.1, community: '${SNMP_TEST_SECRET}', user: bw}\n",
        [PREFIX + ".targets[0].user: only with version 3 (got 'bw')"],
    ),
    (
        "version-1",
        "    targets:\n      - {host: 192.0.2.1, version: 1, community: x}\n",
        [PREFIX + ".targets[0].version: must be one of '2c' or '3' (got '1')"],
    ),
    (
        "unknown-module",
        "    targets:\n      - {host: 192.0.2.1, community: x, modules: [if_mib, ifmib]}\n",
        [
            PREFIX + ".targets[0].modules[1]: unknown module 'ifmib' (known: host_resources, "
            "if_mib, system) (got 'ifmib')"
        ],
    ),
    (
        "module-twice",
        "    targets:\n      - {host: 192.0.2.1, community: x, modules: [system, system]}\n",
        [PREFIX + ".targets[0].modules[1]: is listed twice (got 'system')"],
    ),
    (
        "same-name",
        "    targets:\n      - {host: 192.0.2.1, community: x}\n"
        "      - {host: 192.0.2.1, community: y}\n",
        [
            PREFIX
            + ".targets[1].name: target name '192.0.2.1' is used twice (set `name`) (got None)"
        ],
    ),
    (
        "target-timeout",
        "    timeout: 5s\n    targets:\n      - {host: 192.0.2.1, community: x, timeout: 5s}\n",
        [
            PREFIX + ".targets[0].timeout: must be shorter than the collector timeout (5s) "
            "(got '5s')"
        ],
    ),
    (
        "bad-oid",
        "    tables:\n      - {name: ups, table: [{oid: 1.3.6.x, metric: a}]}\n",
        [
            PREFIX + ".tables[0].table[0].oid: must be a numeric OID like 1.3.6.1.2.1.2.2.1.8 "
            "(got '1.3.6.x')"
        ],
    ),
    (
        "builtin-table-name",
        "    tables:\n      - {name: system, table: [{oid: 1.3.6.1, metric: a}]}\n",
        [PREFIX + ".tables[0].name: is a built-in module (got 'system')"],
    ),
    (
        "own-metric",
        "    tables:\n      - {name: t, table: [{oid: 1.3.6.1, metric: if_in_octets_total,"
        " type: counter}]}\n",
        [
            PREFIX + ".tables[0].table[0].metric: is served by botwatch itself "
            "(botwatch_snmp_if_in_octets) (got 'if_in_octets_total')"
        ],
    ),
    (
        "metric-in-two-tables",
        "    tables:\n      - {name: a, table: [{oid: 1.3.6.1, metric: temp_celsius}]}\n"
        "      - {name: b, table: [{oid: 1.3.6.2, metric: temp_celsius}]}\n",
        [
            PREFIX + ".tables[1].table[0].metric: botwatch_snmp_temp_celsius is fed by table "
            "'a' already (got 'temp_celsius')"
        ],
    ),
    (
        "gauge-suffix",
        "    tables:\n      - {name: t, table: [{oid: 1.3.6.1, metric: drops_total}]}\n",
        [
            PREFIX + ".tables[0].table[0].metric: a gauge's name must not end in _total, "
            "_created, _count, _sum, _bucket or _info (use type: counter or info) "
            "(got 'drops_total')"
        ],
    ),
    (
        "prefixed-metric",
        "    tables:\n      - {name: t, table: [{oid: 1.3.6.1, metric: botwatch_snmp_x}]}\n",
        [
            PREFIX + ".tables[0].table[0].metric: is prefixed with botwatch_snmp_ already: "
            "write the rest only (got 'botwatch_snmp_x')"
        ],
    ),
    (
        "label-clash",
        "    tables:\n      - {name: t, index_label: slot, table: [{oid: 1.3.6.1, metric: slot,"
        " type: label}]}\n",
        [
            PREFIX
            + ".tables[0].table[0].metric: 'slot' is already a label of this table (got 'slot')"
        ],
    ),
    (
        "info-value-label-clash",
        "    tables:\n      - {name: t, table: [{oid: 1.3.6.1, metric: model_info, type: info},"
        " {oid: 1.3.6.2, metric: model, type: label}]}\n",
        [
            PREFIX + ".tables[0].table[0].metric: 'model' is already a label of this table "
            "(got 'model_info')"
        ],
    ),
    (
        "scale-on-info",
        "    tables:\n      - {name: t, table: [{oid: 1.3.6.1, metric: model, type: info,"
        " scale: 2}]}\n",
        [PREFIX + ".tables[0].table[0].scale: applies to gauge and counter columns only (got 2)"],
    ),
]


@pytest.mark.parametrize(("name", "body", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_section_is_one_line(
    name: str,
    body: str,
    expected: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SNMP_TEST_SECRET", SECRET)
    monkeypatch.setenv("SNMP_TEST_KEY", SHORT_KEY)
    path = tmp_path / f"{name}.yml"
    path.write_text(section(body))
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [line.replace("{f}", str(path)) for line in expected]
    assert SECRET not in err
    assert SHORT_KEY not in err


def test_a_good_section_with_secrets_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SNMP_TEST_SECRET", SECRET)
    path = tmp_path / "ok.yml"
    path.write_text(
        section(
            "    interval: 30s\n"
            "    tables:\n"
            "      - name: ups\n"
            "        index_label: battery\n"
            "        table:\n"
            "          - {oid: .1.3.6.1.4.1.318.1.1.1.2.2.1, metric: ups_capacity_ratio,"
            " scale: 0.01}\n"
            "          - {oid: 1.3.6.1.4.1.318.1.1.1.2.2.2, metric: battery_name, type: label}\n"
            "    targets:\n"
            "      - {name: edge, host: 192.0.2.1, community: '${SNMP_TEST_SECRET}',"
            " modules: [if_mib, system, ups]}\n"
            "      - {host: 192.0.2.2, port: 1161, version: 3, user: bw, auth_protocol: SHA256,"
            " auth_key: '${SNMP_TEST_SECRET}', priv_protocol: AES256,"
            " priv_key: '${SNMP_TEST_SECRET}', timeout: 2s, retries: 0}\n"
            "      - {host: '::1', port: 1161, version: '3', user: watcher}\n"
        )
    )
    loaded = load_config(path)
    config = loaded.config.collectors.snmp
    assert isinstance(config, SnmpConfig)
    assert config.wanted()
    edge, v3, noauth = config.targets
    assert (edge.label, v3.label, noauth.label) == ("edge", "192.0.2.2:1161", "[::1]:1161")
    assert edge.timeout == pytest.approx(10 * 0.9)  # 90% of the collector's timeout
    assert (v3.timeout, v3.retries) == (2.0, 0)
    assert (v3.security_level, noauth.security_level) == ("authPriv", "noAuthNoPriv")
    assert noauth.modules == ["if_mib"]
    assert SECRET in loaded.secret_values
    assert SECRET not in repr(config)
    assert SECRET not in config.model_dump_json()
    ups = config.tables[0]
    assert ups.table[0].oid == (1, 3, 6, 1, 4, 1, 318, 1, 1, 1, 2, 2, 1)
    assert ups.model_dump()["table"][0]["oid"] == "1.3.6.1.4.1.318.1.1.1.2.2.1"
    assert set(config.modules()) == {"if_mib", "system", "host_resources", "ups"}


def test_default_target_timeout_follows_the_collector() -> None:
    config = SnmpConfig.model_validate(
        {"interval": "2s", "targets": [{"host": "h", "community": "c"}]}
    )
    assert config.timeout == 2.0
    assert config.targets[0].timeout == pytest.approx(1.8)


def test_off_without_targets() -> None:
    assert not SnmpConfig().wanted()
    assert not SnmpConfig.model_validate(
        {"enabled": False, "targets": [{"host": "h", "community": "c"}]}
    ).wanted()


def test_secrets_list_for_scrubbing() -> None:
    target = TargetConfig.model_validate(
        {
            "host": "h",
            "version": "3",
            "user": "u",
            "auth_protocol": "MD5",
            "auth_key": "authkey-123",
            "priv_protocol": "DES",
            "priv_key": "privkey-456",
            "timeout": 1,
        }
    )
    assert target.secrets() == ["authkey-123", "privkey-456"]


def test_validating_a_config_does_not_import_pysnmp(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(section("    targets:\n      - {host: 192.0.2.1, version: 3, user: u}\n"))
    code = (
        "import sys; from pathlib import Path; from exporter.config import load_config; "
        f"load_config(Path({str(path)!r})); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pysnmp', 'pyasn1')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
