"""Every bad config gets exactly one line per problem, naming file, key path and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cli import main
from tests.support import run_cli

# (name, file content, the exact expected stderr lines with {f} for the file path)
CASES: list[tuple[str, str, list[str]]] = [
    (
        "duration",
        "collectors:\n  host:\n    interval: fast\n",
        ["{f}: collectors.host.interval: not a duration (use e.g. 15s, 2m, 1h30m) (got 'fast')"],
    ),
    (
        "zero-duration",
        "collectors:\n  host:\n    interval: 0s\n",
        ["{f}: collectors.host.interval: must be a positive duration (got '0s')"],
    ),
    (
        "typo-in-collector",
        "collectors:\n  host:\n    intervl: 15s\n",
        ["{f}: collectors.host.intervl: unknown key (did you mean 'interval'?)"],
    ),
    (
        "typo-top-level",
        "collector:\n  host: {}\n",
        ["{f}: collector: unknown key (did you mean 'collectors'?)"],
    ),
    (
        "unknown-collector",
        "collectors:\n  hots: {}\n",
        ["{f}: collectors.hots: unknown key (did you mean 'host'?)"],
    ),
    (
        "bool",
        "collectors:\n  host:\n    enabled: maybe\n",
        ["{f}: collectors.host.enabled: must be true or false (got 'maybe')"],
    ),
    (
        "log-level",
        "log:\n  level: verbose\n",
        ["{f}: log.level: must be one of 'debug', 'info', 'warning' or 'error' (got 'verbose')"],
    ),
    (
        "log-format",
        "log:\n  format: xml\n",
        ["{f}: log.format: must be one of 'json' or 'logfmt' (got 'xml')"],
    ),
    (
        "listen-address",
        "web:\n  listen_address: localhost\n",
        [
            "{f}: web.listen_address: not host:port (e.g. ':9877' or '127.0.0.1:9877') "
            "(got 'localhost')"
        ],
    ),
    (
        "listen-v6",
        "web:\n  listen_address: '::1:9877'\n",
        ["{f}: web.listen_address: IPv6 hosts need brackets, e.g. '[::1]:9877' (got '::1:9877')"],
    ),
    (
        "regex",
        "collectors:\n  host:\n    filesystems:\n      exclude_mountpoints: '(unclosed'\n",
        [
            "{f}: collectors.host.filesystems.exclude_mountpoints: invalid regex: missing ), "
            "unterminated subpattern at position 0 (got '(unclosed')"
        ],
    ),
    (
        "timeout-over-interval",
        "collectors:\n  host:\n    interval: 5s\n    timeout: 10s\n",
        ["{f}: collectors.host.timeout: must not exceed the interval (5s) (got '10s')"],
    ),
    (
        "stat-timeout",
        "collectors:\n  host:\n    timeout: 5s\n    filesystems: {stat_timeout: 5s}\n",
        [
            "{f}: collectors.host.filesystems.stat_timeout: must be shorter than the collector "
            "timeout (5s) (got '5s')"
        ],
    ),
    (
        "not-a-mapping",
        "collectors:\n  host: [1, 2]\n",
        ["{f}: collectors.host: must be a mapping (got a list)"],
    ),
    (
        "top-level-list",
        "- a\n- b\n",
        ["{f}: top level: must be a mapping (got a list)"],
    ),
    (
        "yaml-syntax",
        "collectors:\n  host: {interval: 15s\n",
        ["{f}: line 3, column 1: invalid YAML: expected ',' or '}', but got '<stream end>'"],
    ),
    (
        "duplicate-key",
        "collectors:\n  host: {}\n  host: {}\n",
        ["{f}: line 3, column 3: invalid YAML: duplicate key 'host'"],
    ),
    (
        "unknown-preset",
        "include: [trader]\n",
        ["{f}: include[0]: unknown preset 'trader' (did you mean 'trader-bot'?)"],
    ),
    (
        "include-not-list",
        "include: trader-bot\n",
        ["{f}: include: must be a list of preset names (got 'trader-bot')"],
    ),
    (
        "unset-env",
        "state_dir: ${BOTWATCH_TEST_UNSET}\n",
        [
            "{f}: state_dir: environment variable BOTWATCH_TEST_UNSET is not set "
            "(give a default with ${BOTWATCH_TEST_UNSET:-value})"
        ],
    ),
    (
        "path-type",
        "collectors:\n  host:\n    procfs: [1]\n",
        ["{f}: collectors.host.procfs: must be a path (got a list)"],
    ),
    (
        "probe-type",
        "probes:\n  - {name: x}\n",
        ["{f}: probes[0].type: required key 'type' is missing"],
    ),
    (
        "list-type",
        "probes: {name: x}\n",
        ["{f}: probes: must be a list (got a mapping)"],
    ),
    (
        "log-source-type",
        "logs:\n  sources:\n    - {name: x, type: syslog}\n",
        [
            "{f}: logs.sources[0].type: unknown type (known: 'file', 'journald', 'docker') "
            "(got 'syslog')"
        ],
    ),
    (
        "log-source-no-type",
        "logs:\n  sources:\n    - {name: x}\n",
        ["{f}: logs.sources[0].type: required key 'type' is missing"],
    ),
    (
        "log-source-typo",
        "logs:\n  sources:\n    - {name: x, type: file, paht: /a}\n",
        [
            "{f}: logs.sources[0].path: required key is missing",
            "{f}: logs.sources[0].paht: unknown key (did you mean 'path'?)",
        ],
    ),
    (
        "log-relative-path",
        "logs:\n  sources:\n    - {name: x, type: file, path: var/log/x.log}\n",
        ["{f}: logs.sources[0].path: must be an absolute path or glob (got 'var/log/x.log')"],
    ),
    (
        "log-rule-regex",
        "logs:\n  sources:\n    - {name: x, type: file, path: /x,"
        " rules: [{name: a, match: '(x'}]}\n",
        [
            "{f}: logs.sources[0].rules[0].match: invalid regex: missing ), unterminated "
            "subpattern at position 0 (got '(x')"
        ],
    ),
    (
        "log-unknown-pack",
        "logs:\n  sources:\n    - {name: x, type: file, path: /x, packs: [trader]}\n",
        [
            "{f}: logs.sources[0].packs[0]: unknown pack 'trader' "
            "(known: alphaengine, nginx, trader-bot) (got 'trader')"
        ],
    ),
    (
        "log-duplicate-source",
        "logs:\n  sources:\n    - {name: x, type: file, path: /x}\n"
        "    - {name: x, type: journald, unit: a}\n",
        ["{f}: logs.sources[1].name: source name 'x' is used twice (got 'x')"],
    ),
    (
        "log-rule-changes-a-pack-rule's-labels",
        "logs:\n  sources:\n    - {name: x, type: file, path: /x, packs: [trader-bot],"
        " rules: [{name: rate_limited, match: '(?P<code>x)'}]}\n",
        [
            "{f}: logs.sources[0].rules[0]: rule 'rate_limited' has labels ['code'] here but [] "
            "in an earlier entry (got a mapping)"
        ],
    ),
    (
        "log-reserved-label",
        "logs:\n  sources:\n    - {name: x, type: file, path: /x,"
        " rules: [{name: a, match: '(?P<source>x)'}]}\n",
        [
            "{f}: logs.sources[0].rules[0].match: 'source' cannot be a label name "
            "(got '(?P<source>x)')"
        ],
    ),
    (
        "log-stream",
        "logs:\n  sources:\n    - {name: 'a b', type: docker, container: c, streams: [stdin]}\n",
        [
            "{f}: logs.sources[0].name: must match [A-Za-z0-9][A-Za-z0-9_.:-]* (got 'a b')",
            "{f}: logs.sources[0].streams[0]: must be one of 'stdout' or 'stderr' (got 'stdin')",
        ],
    ),
    (
        "docker-system-df",
        "collectors:\n  docker:\n    system_df: {interval: 1m, timeout: 2m, intreval: 1s}\n"
        "    include: '('\n",
        [
            "{f}: collectors.docker.include: invalid regex: "
            "missing ), unterminated subpattern at position 0 (got '(')",
            "{f}: collectors.docker.system_df.timeout: must not exceed the interval (1m) "
            "(got '2m')",
            "{f}: collectors.docker.system_df.intreval: unknown key (did you mean 'interval'?)",
        ],
    ),
    (
        "probes",
        "probes:\n  - {name: api, type: tcp, host: h, port: 70000}\n"
        "  - {name: 'a b', type: listener, port: 0}\n  - {name: z, type: nope}\n"
        "  - {name: w, type: http, urll: 'http://x'}\n",
        [
            "{f}: probes[0].port: must be at most 65535 (got 70000)",
            "{f}: probes[1].name: must match [A-Za-z0-9][A-Za-z0-9_.:-]* (got 'a b')",
            "{f}: probes[1].port: must be at least 1 (got 0)",
            "{f}: probes[2].type: unknown type (known: 'http', 'websocket', 'tcp', 'listener', "
            "'dns', 'postgres', 'redis') (got 'nope')",
            "{f}: probes[3].url: required key is missing",
            "{f}: probes[3].urll: unknown key (did you mean 'url'?)",
        ],
    ),
    (
        "probe-names",
        "probes:\n  - {name: api, type: tcp, host: h, port: 1}\n"
        "  - {name: api, type: listener, port: 2}\n",
        ["{f}: probes[1].name: probe name 'api' is used twice (got 'api')"],
    ),
    (
        "several-problems",
        "log:\n  level: loud\ncollectors:\n  host:\n    interval: soon\n    enabled: 3\n",
        [
            "{f}: log.level: must be one of 'debug', 'info', 'warning' or 'error' (got 'loud')",
            "{f}: collectors.host.enabled: must be true or false (got 3)",
            "{f}: collectors.host.interval: not a duration (use e.g. 15s, 2m, 1h30m) (got 'soon')",
        ],
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_config_one_line_per_problem(
    name: str,
    text: str,
    expected: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BOTWATCH_TEST_UNSET", raising=False)
    path = tmp_path / f"{name}.yml"
    path.write_text(text)
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert sorted(err.splitlines()) == sorted(line.replace("{f}", str(path)) for line in expected)
    assert "Traceback" not in err


def test_value_from_environment_is_never_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOTWATCH_TEST_SECRET", "hunter2-is-a-secret")
    path = tmp_path / "c.yml"
    path.write_text("collectors:\n  host:\n    interval: ${BOTWATCH_TEST_SECRET}\n")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"{path}: collectors.host.interval: not a duration (use e.g. 15s, 2m, 1h30m) "
        "(got the value of $BOTWATCH_TEST_SECRET)\n"
    )


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "{f}: cannot read config: file not found"),
        (lambda p: p.mkdir(), "{f}: cannot read config: is a directory"),
        (lambda p: p.write_bytes(b"\xff\xfe bad"), "{f}: cannot read config: not UTF-8"),
    ],
    ids=["missing", "directory", "not-utf8"],
)
def test_unreadable_file_exits_2_from_the_real_binary(
    setup: object, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "config.yml"
    setup(path)  # type: ignore[operator]
    proc = run_cli("check-config", str(path))
    assert proc.returncode == 2
    assert proc.stderr.startswith(message.replace("{f}", str(path)))
    assert len(proc.stderr.splitlines()) == 1


def test_run_with_bad_config_exits_2_before_listening(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("web:\n  listen_address: nowhere\n")
    proc = run_cli("--config.file", str(path))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{path}: web.listen_address: not host:port (e.g. ':9877' or '127.0.0.1:9877') "
        "(got 'nowhere')"
    ]


def test_check_config_names_the_collectors_that_would_run(tmp_path: Path) -> None:
    path = tmp_path / "ok.yml"
    path.write_text("collectors:\n  oom: {enabled: false}\n  sqlite: {databases: []}\n")
    done = run_cli("check-config", str(path))
    assert done.returncode == 0
    # host is on; sqlite, files, process, probes and logs have nothing to do; oom is off.
    assert done.stdout == f"{path}: OK (collectors: host)\n"
