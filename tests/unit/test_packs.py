"""The packaged packs: loading, the rule-name contract, and what they count.

Every error string the runbooks quote is checked in every log format its stack writes
(tests/fixtures/packs/runbook_strings.yaml), and example lines per pack are checked for
exactly the hits they must produce, near misses included (*.examples.yaml).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.logs import packs
from exporter.logs.models import Pack
from exporter.logs.packs import load_pack, pack_names
from exporter.logs.rules import RuleSet, translate
from exporter.yamlsource import ConfigError
from tests.support import NO_HYPERSCAN_HERE, RULE_ENGINES

FIXTURES = Path(__file__).parent.parent / "fixtures" / "packs"
PACKS = ("alphaengine", "nginx", "trader-bot")
ENGINES = RULE_ENGINES

# The rule names and their labels: a contract with the alert rules.
CONTRACT: dict[str, tuple[str, ...]] = {
    "rate_limited": (),
    "circuit_breaker_open": (),
    "ws_disconnected": (),
    "ws_reconnect_attempt": (),
    "ws_connect_failed": (),
    "auth_failed": ("reason",),
    "config_missing": ("var",),
    "exchange_connection_failed": (),
    "exchange_api_error": ("code",),
    "exchange_api_key_rejected": (),
    "order_rejected": ("reason",),
    "db_connection_error": (),
    "db_corrupt": (),
    "db_locked": (),
    "disk_full": (),
    "out_of_memory": (),
    "port_in_use": (),
    "cors_rejected": (),
    "upstream_error": ("status",),
    "unhandled_exception": (),
    "error_lines": (),
}
ORDER_REASONS = {
    "insufficient_balance",
    "position_limit",
    "daily_loss_limit",
    "min_quantity",
    "price_limit",
    "other",
}
# What a captured label may look like: bounded by construction.
CAPTURED = {
    "code": re.compile(r"-\d{4}"),
    "status": re.compile(r"\d{3}"),
    "var": re.compile(r"[A-Z][A-Z0-9_]*"),
}

Hit = tuple[str, tuple[str, ...]]
Event = tuple[str, str]


# --- helpers ----------------------------------------------------------------------------


@cache
def ruleset(pack: str, engine: str) -> RuleSet:
    loaded = load_pack(pack)
    return RuleSet(loaded.rules, loaded.breakers, engine=engine)


def parse_hit(text: str) -> tuple[str, dict[str, str]]:
    """'rule{a=1,b=2}' -> ('rule', {'a': '1', 'b': '2'})."""
    name, _, rest = text.partition("{")
    labels = dict(pair.split("=", 1) for pair in rest.rstrip("}").split(",") if pair)
    return name, labels


def expected_hits(rules: RuleSet, texts: list[str]) -> set[Hit]:
    out = set()
    for text in texts:
        name, labels = parse_hit(text)
        assert name in rules.label_names, f"{name} is not a rule of this pack"
        out.add((name, tuple(labels[label] for label in rules.label_names[name])))
    return out


def expected_event(text: str | None) -> set[Event]:
    if text is None:
        return set()
    state, _, name = text.partition("/")
    return {(state, name)}


def scan_line(rules: RuleSet, line: str) -> tuple[set[Hit], set[Event]]:
    matches, events = rules.scan(line.encode() + b"\n")
    assert all(m.offset == 0 for m in matches) and all(e.offset == 0 for e in events)
    assert len(events) <= 1, "at most one breaker event per line"
    hits = [(m.rule, m.labels) for m in matches]
    assert len({rule for rule, _ in hits}) == len(hits), "a rule counted twice on one line"
    return set(hits), {(e.state, e.breaker) for e in events}


def load_fixture(name: str) -> Any:
    return yaml.safe_load((FIXTURES / name).read_text("utf-8"))


# --- log formats the runbook strings are written in -------------------------------------

TS = "2026-11-23T03:12:45.123456Z"


def _tracing_json(text: str) -> str:
    body = {"timestamp": TS, "level": "ERROR", "fields": {"message": text}, "target": "app"}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _structlog(text: str, ascii_only: bool) -> str:
    return json.dumps({"event": text, "level": "error", "timestamp": TS}, ensure_ascii=ascii_only)


# name -> (writes the line, whether the format carries an error level)
Format = tuple[Callable[[str], str], bool]
FORMATS: dict[str, dict[str, Format]] = {
    "trader-bot": {
        "plain": (lambda text: text, False),
        "tracing": (lambda text: f"{TS} ERROR trader_api::server: {text}", True),
        "tracing-ansi": (
            lambda text: (
                f"\x1b[2m{TS}\x1b[0m \x1b[31mERROR\x1b[0m "
                f"\x1b[2mtrader_api::server\x1b[0m\x1b[2m:\x1b[0m {text}"
            ),
            True,
        ),
        "tracing-json": (_tracing_json, True),
    },
    "alphaengine": {
        "plain": (lambda text: text, False),
        "logging": (lambda text: f"2026-11-23 03:12:45,123 - bot.ws - ERROR - {text}", True),
        "structlog-json": (lambda text: _structlog(text, ascii_only=True), True),
        "structlog-json-utf8": (lambda text: _structlog(text, ascii_only=False), True),
    },
    "nginx": {
        "plain": (lambda text: text, False),
        "error-log": (
            lambda text: f"2026/11/23 03:12:45 [error] 1234#1234: *5 {text}, client: 10.0.0.7",
            True,
        ),
    },
}


def runbook_cases() -> Iterator[Any]:
    for pack, entries in load_fixture("runbook_strings.yaml").items():
        for entry in entries:
            for format_name in entry.get("formats", FORMATS[pack]):
                for engine in ENGINES:
                    yield pytest.param(
                        pack, entry, format_name, engine, id=f"{pack}-{format_name}-{engine}"
                    )


def example_cases() -> Iterator[Any]:
    for pack in PACKS:
        for index, entry in enumerate(load_fixture(f"{pack}.examples.yaml")):
            for engine in ENGINES:
                yield pytest.param(pack, entry, engine, id=f"{pack}-{index}-{engine}")


# --- loading ----------------------------------------------------------------------------


def test_pack_names_are_the_packaged_files() -> None:
    assert pack_names() == frozenset(PACKS)


def test_load_pack_validates_and_caches() -> None:
    pack = load_pack("trader-bot")
    assert isinstance(pack, Pack)
    assert load_pack("trader-bot") is pack
    assert pack.rules and pack.breakers and pack.description


def test_unknown_pack_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown pack 'nope' \(known: alphaengine, nginx"):
        load_pack("nope")


@pytest.fixture
def pack_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(packs, "_directory", lambda: tmp_path)
    packs.pack_names.cache_clear()
    packs.load_pack.cache_clear()
    yield tmp_path
    packs.pack_names.cache_clear()
    packs.load_pack.cache_clear()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [", r"exporter/logs/packs/broken\.yaml: line \d+, column \d+: invalid YAML"),
        ("rules: []\nrules: []\n", r"broken\.yaml: .*duplicate key 'rules'"),
        ("- a\n", r"broken\.yaml: top level: must be a mapping"),
        ("rules:\n  - {name: Bad, match: x}\n", r"broken\.yaml: rules\[0\]\.name: must match"),
        ("rules:\n  - {name: x, match: '('}\n", r"broken\.yaml: rules\[0\].*invalid regex"),
        ("rulez: []\n", r"broken\.yaml: rulez"),
    ],
)
def test_broken_pack_names_its_file(pack_dir: Path, text: str, message: str) -> None:
    (pack_dir / "broken.yaml").write_text(text)
    assert pack_names() == {"broken"}
    with pytest.raises(ConfigError, match=message):
        load_pack("broken")


# --- the contract -----------------------------------------------------------------------


@pytest.mark.parametrize("pack", PACKS)
def test_pack_file_starts_with_a_comment(pack: str) -> None:
    text = (Path(packs.__file__).parent / "packs" / f"{pack}.yaml").read_text("utf-8")
    assert text.startswith("# ")


@pytest.mark.parametrize("pack", PACKS)
def test_rule_names_and_labels_are_the_contract(pack: str) -> None:
    rules = ruleset(pack, "re")
    for name, labels in rules.label_names.items():
        assert name in CONTRACT, f"{pack}: rule {name!r} is not in the contract"
        assert labels == CONTRACT[name], f"{pack}: {name} has labels {labels}"


def test_the_packs_together_cover_the_contract() -> None:
    names = {rule.name for pack in PACKS for rule in load_pack(pack).rules}
    assert names == set(CONTRACT)


def test_packs_combine_into_one_rule_set() -> None:
    # Shared rule names must have the same labels in every pack (check_variants).
    rules = [rule for pack in PACKS for rule in load_pack(pack).rules]
    breakers = [breaker for pack in PACKS for breaker in load_pack(pack).breakers]
    RuleSet(rules, breakers, engine="re")


@pytest.mark.parametrize("pack", PACKS)
def test_static_labels_are_from_the_contract(pack: str) -> None:
    for rule in load_pack(pack).rules:
        if rule.name == "order_rejected":
            assert rule.labels["reason"] in ORDER_REASONS
        if rule.name == "upstream_error" and "status" in rule.labels:
            assert CAPTURED["status"].fullmatch(rule.labels["status"])


@pytest.mark.parametrize("pack", PACKS)
def test_order_rejected_catch_all_comes_last(pack: str) -> None:
    reasons = [r.labels["reason"] for r in load_pack(pack).rules if r.name == "order_rejected"]
    assert not reasons or reasons[-1] == "other"


def _constructs(node: Any) -> Iterator[str]:
    for op, av in node:
        yield op.name
        if op.name == "BRANCH":
            for branch in av[1]:
                yield from _constructs(branch)
        elif op.name == "SUBPATTERN":
            yield from _constructs(av[3])
        elif op.name in ("MAX_REPEAT", "MIN_REPEAT"):
            yield from _constructs(av[2])


@pytest.mark.parametrize("pack", PACKS)
def test_patterns_are_portable(pack: str) -> None:
    """No lookaround, backreference, atomic or possessive parts: the patterns run as they are
    in Hyperscan and RE2-based tools (the benchmark feeds them to mtail)."""
    parser: Any = importlib.import_module("re._parser")
    loaded = load_pack(pack)
    for entry in [*loaded.rules, *loaded.breakers]:
        used = set(_constructs(parser.parse(entry.match.encode(), re.MULTILINE)))
        banned = used & {
            "ASSERT",
            "ASSERT_NOT",
            "GROUPREF",
            "GROUPREF_EXISTS",
            "ATOMIC_GROUP",
            "POSSESSIVE_REPEAT",
        }
        assert not banned, f"{pack}: {entry.match!r} uses {banned}"
        translate(entry.match, entry.ignore_case)  # and the prefilter understands it


@pytest.mark.skipif("hyperscan" not in ENGINES, reason=NO_HYPERSCAN_HERE)
@pytest.mark.parametrize("pack", PACKS)
def test_every_pattern_runs_in_hyperscan(pack: str) -> None:
    rules = ruleset(pack, "hyperscan")
    assert rules._hyperscan is not None
    assert len(rules._hyperscan.indexes) == len(rules._entries)


# --- what the packs count ---------------------------------------------------------------


@pytest.mark.parametrize(("pack", "entry", "format_name", "engine"), list(runbook_cases()))
def test_runbook_string_hits_in_every_format(
    pack: str, entry: dict[str, Any], format_name: str, engine: str
) -> None:
    rules = ruleset(pack, engine)
    write, has_level = FORMATS[pack][format_name]
    line = write(entry["text"])
    hits, events = scan_line(rules, line)
    wanted = expected_hits(rules, entry["hits"])
    if has_level:
        wanted.add(("error_lines", ()))
    assert wanted <= hits, f"{line!r}: missing {wanted - hits}"
    assert events == expected_event(entry.get("breaker")), line


@pytest.mark.parametrize(("pack", "entry", "engine"), list(example_cases()))
def test_example_line_hits_exactly(pack: str, entry: dict[str, Any], engine: str) -> None:
    rules = ruleset(pack, engine)
    hits, events = scan_line(rules, entry["line"])
    assert hits == expected_hits(rules, entry["hits"]), entry["line"]
    assert events == expected_event(entry.get("breaker")), entry["line"]


@pytest.mark.parametrize("pack", PACKS)
def test_captured_labels_are_bounded(pack: str) -> None:
    rules = ruleset(pack, "re")
    lines = [entry["line"] for entry in load_fixture(f"{pack}.examples.yaml")]
    matches, _ = rules.scan("".join(line + "\n" for line in lines).encode())
    static = {(r.name, k, v) for r in load_pack(pack).rules for k, v in r.labels.items()}
    for match in matches:
        for label, value in zip(rules.label_names[match.rule], match.labels, strict=True):
            if label in CAPTURED and (match.rule, label, value) not in static:
                assert CAPTURED[label].fullmatch(value), f"{match.rule}{{{label}={value!r}}}"


@pytest.mark.skipif(len(ENGINES) < 2, reason=NO_HYPERSCAN_HERE)
def test_engines_agree_on_all_fixture_lines() -> None:
    lines = [entry["line"] for pack in PACKS for entry in load_fixture(f"{pack}.examples.yaml")]
    for pack, entries in load_fixture("runbook_strings.yaml").items():
        for entry in entries:
            lines += [write(entry["text"]) for write, _ in FORMATS[pack].values()]
    data = "".join(line + "\n" for line in lines).encode()
    rules = [rule for pack in PACKS for rule in load_pack(pack).rules]
    breakers = [breaker for pack in PACKS for breaker in load_pack(pack).breakers]
    by_hyperscan = RuleSet(rules, breakers, engine="hyperscan").scan(data)
    by_re = RuleSet(rules, breakers, engine="re").scan(data)
    assert by_hyperscan == by_re
    assert by_re[0] and by_re[1]
