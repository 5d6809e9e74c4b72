"""The rule engine: results as the contract defines them, both engines, the prefilter.

The contract is a per-line loop (RuleSet.scan's docstring): `reference` below spells it out,
and every engine must give exactly its results, on hand-written cases and on seeded random
buffers full of the constructs a prefilter could get wrong.
"""

from __future__ import annotations

import random
import re
import threading
from typing import Any

import pytest
from pydantic_core import PydanticCustomError

from exporter.logs import rules as rules_module
from exporter.logs.models import BreakerConfig, RuleConfig, compile_bytes
from exporter.logs.rules import (
    BreakerEvent,
    Match,
    RuleSet,
    available_engine,
    emit,
    lowered,
    options,
    prefix,
    translate,
)
from tests.support import NO_HYPERSCAN_HERE, RULE_ENGINES

ENGINES = RULE_ENGINES


def rule(name: str, match: str, **kwargs: Any) -> RuleConfig:
    return RuleConfig.model_validate({"name": name, "match": match, **kwargs})


def breaker(match: str, state: str, **kwargs: Any) -> BreakerConfig:
    return BreakerConfig.model_validate({"match": match, "state": state, **kwargs})


def reference(
    rules: list[RuleConfig], breakers: list[BreakerConfig], data: bytes
) -> tuple[list[Match], list[BreakerEvent]]:
    """The contract, line by line: per rule name (in order of first appearance) the first
    matching variant; per line the first matching breaker entry."""
    names = list(dict.fromkeys(r.name for r in rules))
    matches, events = [], []
    offset = 0
    for line in data.split(b"\n")[:-1]:
        for name in names:
            for variant in (r for r in rules if r.name == name):
                found = variant.regex.search(line)
                if found:
                    labels = tuple(
                        variant.labels[label]
                        if label in variant.labels
                        else (found.group(label) or b"").decode("utf-8", "replace")
                        for label in variant.label_names()
                    )
                    matches.append(Match(name, labels, offset))
                    break
        for entry in breakers:
            found = entry.regex.search(line)
            if found:
                named = "breaker" in entry.regex.groupindex and found.group("breaker")
                name = named.decode("utf-8", "replace") if named else entry.breaker
                events.append(BreakerEvent(name, entry.state, offset))
                break
        offset += len(line) + 1
    return matches, events


def lines(*texts: str | bytes) -> bytes:
    return b"".join((t.encode() if isinstance(t, str) else t) + b"\n" for t in texts)


# --- results ----------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_labels_in_label_name_order_with_static_ones(engine: str) -> None:
    rs = RuleSet(
        [rule("api_error", r"code=(?P<code>-\d+)(?: (?P<msg>\w+))?", labels={"kind": "x"})],
        engine=engine,
    )
    assert rs.label_names == {"api_error": ("code", "kind", "msg")}
    matches, _ = rs.scan(lines("ok", "bad code=-1021 Timestamp", "code=-2015"))
    assert matches == [
        Match("api_error", ("-1021", "x", "Timestamp"), 3),
        Match("api_error", ("-2015", "x", ""), 28),  # `msg` did not take part
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_captures_are_decoded_with_replacement(engine: str) -> None:
    rs = RuleSet([rule("r", r"user=(?P<user>\S+)")], engine=engine)
    matches, _ = rs.scan(lines(b"user=\xff\xfe", "user=연결"))
    assert [m.labels for m in matches] == [("\ufffd\ufffd",), ("연결",)]


@pytest.mark.parametrize("engine", ENGINES)
def test_first_matching_variant_of_a_name_wins(engine: str) -> None:
    variants = [
        rule("order_rejected", "insufficient balance", labels={"reason": "balance"}),
        rule("order_rejected", "position limit", labels={"reason": "position"}),
        rule("order_rejected", "rejected", labels={"reason": "other"}),
    ]
    rs = RuleSet(variants, engine=engine)
    matches, _ = rs.scan(
        lines(
            "order rejected: position limit, insufficient balance",
            "order rejected: position limit",
            "order rejected: weather",
            "order accepted",
        )
    )
    assert [(m.labels, m.offset) for m in matches] == [
        (("balance",), 0),
        (("position",), 53),
        (("other",), 84),
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_results_in_line_order_then_rule_order(engine: str) -> None:
    rs = RuleSet(
        [rule("b", "two"), rule("a", "one"), rule("b", "one"), rule("c", "o")], engine=engine
    )
    matches, _ = rs.scan(lines("one two", "two", "nothing", "one"))
    assert [(m.rule, m.offset) for m in matches] == [
        ("b", 0),
        ("a", 0),
        ("c", 0),
        ("b", 8),
        ("c", 8),
        ("c", 12),
        ("b", 20),
        ("a", 20),
        ("c", 20),
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_breaker_events(engine: str) -> None:
    breakers = [
        breaker(r"breaker (?P<breaker>\w+) opened", "open"),
        breaker(r"breaker (?P<breaker>\w*) closed", "closed", breaker="fallback"),
        breaker(r"breaker is open", "open", breaker="exchange"),
        breaker(r"open", "half_open"),  # never reached when an earlier entry matched
    ]
    rs = RuleSet([rule("x", "open")], breakers, engine=engine)
    matches, events = rs.scan(
        lines("breaker binance opened", "breaker  closed", "breaker is open", "half open", "-")
    )
    assert events == [
        BreakerEvent("binance", "open", 0),
        BreakerEvent("fallback", "closed", 23),  # an empty group names nothing
        BreakerEvent("exchange", "open", 39),
        BreakerEvent("default", "half_open", 55),
    ]
    assert [m.offset for m in matches] == [0, 39, 55]


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_and_quiet_buffers(engine: str) -> None:
    rs = RuleSet([rule("x", "error")], [breaker("open", "open")], engine=engine)
    assert rs.scan(b"") == ([], [])
    assert rs.scan(lines("", "", "all good")) == ([], [])


@pytest.mark.parametrize("engine", ENGINES)
def test_a_long_line_with_many_hits_counts_once(engine: str) -> None:
    rs = RuleSet([rule("x", r"err\w*"), rule("y", "(?i)ERR")], engine=engine)
    long_line = b"error " * 150_000
    matches, _ = rs.scan(lines("a", long_line, "error"))
    assert [(m.rule, m.offset) for m in matches] == [
        ("x", 2),
        ("y", 2),
        ("x", 3 + len(long_line)),
        ("y", 3 + len(long_line)),
    ]


def test_descriptions_for_the_counters() -> None:
    rs = RuleSet(
        [
            rule("plain", "a", max_values=5),
            rule("reasons", "b", labels={"reason": "one"}, max_values=7),
            rule("reasons", "c", labels={"reason": "two"}),
            rule("reasons", "d", labels={"reason": "one"}),
            rule("codes", r"(?P<code>\d+)"),
            rule("codes", "unknown code", labels={"code": "unknown"}),
        ],
        engine="re",
    )
    assert rs.label_names == {"plain": (), "reasons": ("reason",), "codes": ("code",)}
    assert rs.max_values == {"plain": 5, "reasons": 7, "codes": 20}
    assert rs.static_series == {
        "plain": [()],
        "reasons": [("one",), ("two",)],
        "codes": [("unknown",)],
    }


def test_variants_must_agree_on_labels() -> None:
    with pytest.raises(PydanticCustomError, match="has labels"):
        RuleSet([rule("r", "(?P<a>x)"), rule("r", "y")], engine="re")


def test_engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown rule engine 'pcre'"):
        RuleSet([], engine="pcre")
    assert RuleSet([]).engine == available_engine()
    monkeypatch.setattr(rules_module, "_hyperscan", lambda: None)
    assert available_engine() == "re"
    assert RuleSet([]).engine == "re"
    with pytest.raises(ValueError, match="'hyperscan' is not installed"):
        RuleSet([], engine="hyperscan")


@pytest.mark.skipif("hyperscan" not in ENGINES, reason=NO_HYPERSCAN_HERE)
def test_patterns_hyperscan_refuses_fall_back_to_re() -> None:
    variants = [rule("big", "a{1,100000}b"), rule("small", "error"), rule("any", ".*")]
    rs = RuleSet(variants, engine="hyperscan")
    assert rs._hyperscan is not None
    assert rs._hyperscan.indexes == {1}  # `big` too large, `any` matches the empty string
    data = lines("aaab", "error", "b", "")
    assert rs.scan(data) == reference(variants, [], data)


@pytest.mark.parametrize("engine", ENGINES)
def test_untranslatable_pattern_is_tried_on_every_line(engine: str) -> None:
    variants = [rule("locale", "(?L)fo+"), rule("other", "x")]
    data = lines("foo", "bar", "xfo")
    assert RuleSet(variants, engine=engine).scan(data) == reference(variants, [], data)


@pytest.mark.parametrize("engine", ENGINES)
def test_concurrent_scans(engine: str) -> None:
    variants = [rule("e", r"error (?P<n>\d+)")]
    rs = RuleSet(variants, engine=engine)
    data = lines(*(f"error {i}" if i % 3 else "fine" for i in range(20_000)))
    want = rs.scan(data)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(rs.scan(data))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == [want] * 4


# --- both engines against the contract, on what could trip a prefilter -------------------

TRICKY: list[RuleConfig] = [
    rule("lookbehind", r"(?<=x)error"),
    rule("lookahead_at_end", r"error(?!\S)"),  # true at the end of a line, not before "\n"
    rule("neg_lookbehind", r"(?<!\w)fail"),
    rule("string_anchors", r"\Aboot|done\Z"),
    rule("backref", r"(?P<c>[ab])(?P=c)"),
    rule("conditional", r"(?P<g>x)?(?(g)y|z)end"),
    rule("atomic", r"(?>ab|a)c"),
    rule("possessive", r"a++b"),
    rule("scoped", r"(?i:err)OR"),
    rule("unscoped", r"(?-i:ERR)or", ignore_case=True),
    rule("verbose", r"(?x) w a r n  # the word warn"),
    rule("python_braces", r"x{,2}yz"),
    rule("dotall", r"(?s)a.b"),
    rule("tail", r"fail\w*"),
    rule("tail_optional", r"done(?: in (?P<ms>\d+)ms)?"),
    rule("empty_alternative", r"(?:foo|)bar"),
    rule("empty_lines", r"^$"),
    rule("everything", r"(?P<all>.*)"),
    rule("word", r"\bword\b"),
    rule("non_word", r"\Bor\B"),
    rule("korean", r"연결\s*끊김"),
    rule("high_bytes", "caf\u00e9"),
    rule("classes", r"[^\W\d]{3}\d", ignore_case=True),
    rule("negated", r"[^a-c ]{4}", ignore_case=True),
    rule("case", r"ABC", ignore_case=True),
    rule("variants", r"a(?P<v>b)", labels={}),
    rule("variants", r"(?P<v>c)a"),
    rule("variants", r"ab|ca|xyz", labels={"v": "other"}),
    rule("duplicate", r"foo"),
    rule("duplicate", r"foo", labels={}),
]
TRICKY_BREAKERS = [
    breaker(r"cb (?P<breaker>\w+) open", "open"),
    breaker(r"cb closed", "closed"),
    breaker(r"(?i)CB.*half", "half_open", breaker="main"),
]
_WORDS = """
error ERROR ErRoR x xerror fail failing boot done a b aa bb ab abc ABC ac aab xy z end xyend
zend warn WARN yz xyz bar foobar word words or for 연결끊김 café CAFÉ 1234 abc1 - = : ca é
"""
FRAGMENTS = [
    *_WORDS.split(),
    *["done in 12ms", "연결 끊김", "cb binance open", "cb closed", "CB x half", "cb  open"],
    *[" ", "  ", "\t", "\r"],
]


def random_buffer(rng: random.Random, count: int) -> bytes:
    out = []
    for _ in range(count):
        parts = rng.choices(FRAGMENTS, k=rng.randint(0, 6))
        line = "".join(p + rng.choice(["", " ", ""]) for p in parts).encode()
        if rng.random() < 0.05:
            line += bytes([rng.randrange(128, 256)])  # invalid UTF-8
        out.append(line)
    return b"".join(line + b"\n" for line in out)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", range(8))
def test_engines_follow_the_contract_on_random_buffers(engine: str, seed: int) -> None:
    rng = random.Random(seed)
    rs = RuleSet(TRICKY, TRICKY_BREAKERS, engine=engine)
    for size in (1, 7, 300, 3000):
        data = random_buffer(rng, size)
        assert rs.scan(data) == reference(TRICKY, TRICKY_BREAKERS, data)


@pytest.mark.skipif(len(ENGINES) < 2, reason=NO_HYPERSCAN_HERE)
def test_engines_agree_on_random_buffers() -> None:
    rng = random.Random(99)
    data = random_buffer(rng, 20_000)
    by_hyperscan = RuleSet(TRICKY, TRICKY_BREAKERS, engine="hyperscan").scan(data)
    assert by_hyperscan == RuleSet(TRICKY, TRICKY_BREAKERS, engine="re").scan(data)


# --- the prefilter's translation --------------------------------------------------------

# Patterns without lookaround, backreferences or \A \Z: translated, they must match exactly
# the same lines.
EXACT = [r.match for r in TRICKY if not re.search(r"\(\?<?[=!]|\(\?P=|\(\?\(|\\A|\\Z", r.match)]


def sample_lines(seed: int, count: int = 400) -> list[bytes]:
    return random_buffer(random.Random(seed), count).split(b"\n")[:-1]


@pytest.mark.parametrize("pattern", EXACT)
@pytest.mark.parametrize("ignore_case", [False, True])
def test_translation_is_equivalent(pattern: str, ignore_case: bool) -> None:
    original = compile_bytes(pattern, ignore_case)
    translated = re.compile(emit(translate(pattern, ignore_case)), re.MULTILINE)
    for line in sample_lines(1):
        assert bool(translated.search(line)) == bool(original.search(line)), (pattern, line)


@pytest.mark.parametrize("entry", TRICKY, ids=lambda r: r.match)
def test_prefix_lowering_and_strings_are_supersets(entry: RuleConfig) -> None:
    node = prefix(translate(entry.match, entry.ignore_case))
    cut = re.compile(emit(node), re.MULTILINE)
    low = re.compile(emit(lowered(node)), re.MULTILINE)
    sets = options(lowered(node))
    for line in sample_lines(2):
        if entry.regex.search(line):
            assert cut.search(line), line
            assert low.search(line.lower()), line
            for strings in sets:
                assert any(s in line.lower() for s in strings), (strings, line)


def test_prefix_cuts_unbounded_tails() -> None:
    def cut(pattern: str) -> bytes:
        return emit(prefix(translate(pattern, False)))

    assert cut(r"fail\w*") == b"fail"
    assert cut(r"code=(?P<c>\d+)") == b"code\\x3d[0-9]"
    assert cut(r"ab.*$") == b"ab[\\x00-\\x09\\x0b-\\xff]*$"  # anchors stay: one report
    assert cut(r"x{2,}") == b"x{1}x"
    assert cut(r"(?:a|bc+)d?") == b"(?:a|bc)"
    assert cut(r"x*") == b""


def test_case_folding_is_explicit() -> None:
    assert emit(translate("Ab1", True)) == b"[Aa][Bb]1"
    assert emit(translate("(?i:a)B", False)) == b"[Aa]B"
    assert emit(translate("[^a]", True)) == b"[\\x00-\\x40B-\\x60b-\\xff]"
    assert emit(lowered(translate("Ab", True))) == b"ab"
