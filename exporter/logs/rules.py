"""The rule engine: which rules and circuit-breaker patterns match which lines of a buffer.

Running one regex per rule per line in Python manages some 25 k lines/s; logs arrive a
hundred times faster. So matching is two steps:

1. A prefilter finds candidate (pattern, line) pairs over the whole buffer: one Hyperscan
   database of every pattern, scanned once; or, without Hyperscan (the `re` engine), a few
   searches of the lowered buffer for strings every match must contain.
2. Python's `re` runs each real pattern on its candidate lines only. That confirms the match
   and captures the labels, so a prefilter may report lines that do not match, but must
   never miss one.

Both prefilters start from the same *translation* of each pattern, built from Python's own
parse of it so the dialects cannot disagree: case folding and `.` become explicit byte sets,
lookarounds and other context a prefilter cannot honour are dropped (only widening the
match), and the pattern is cut after its last required part (a trailing `.*` would make
Hyperscan report every byte of the rest of the line).
"""

from __future__ import annotations

import importlib
import itertools
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from exporter.logs.models import BreakerConfig, RuleConfig, check_variants

# Python's regex parser. Private, but it is the only way to read a pattern exactly the way
# `re` does, and it has been stable for a long time; typeshed covers it as sre_parse only.
_parser: Any = importlib.import_module("re._parser")
_constants: Any = importlib.import_module("re._constants")

_NL = b"\n"
ENGINES = ("hyperscan", "re")


# --- public results ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Match:
    rule: str
    labels: tuple[str, ...]  # in the order of RuleSet.label_names[rule]
    offset: int  # start of the matching line in the scanned buffer


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    breaker: str
    state: str  # "closed" | "open" | "half_open"
    offset: int


@cache
def _hyperscan() -> Any:
    try:
        return importlib.import_module("hyperscan")
    except ImportError:
        return None


def available_engine() -> str:
    """The engine a RuleSet uses by default on this machine."""
    return "hyperscan" if _hyperscan() is not None else "re"


# --- pattern translation ----------------------------------------------------------------
# A small IR of what a line-local match needs, independent of either regex dialect.

_ALL = frozenset(range(256))


@dataclass(frozen=True, slots=True)
class _Chars:
    chars: frozenset[int]  # one byte out of these


@dataclass(frozen=True, slots=True)
class _Seq:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Alt:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Repeat:
    item: _Node
    lo: int
    hi: int | None  # None: unbounded


@dataclass(frozen=True, slots=True)
class _Anchor:
    code: bytes  # ^ $ \b \B, which mean the same at a line's edges as at a buffer's newlines


_Node = _Chars | _Seq | _Alt | _Repeat | _Anchor
_EMPTY = _Seq(())


class _Untranslatable(Exception):
    """A construct the translation does not know; the pattern is then tried on every line."""


def _category_sets() -> dict[str, frozenset[int]]:
    # Computed with `re` itself, so the sets are exactly what a bytes pattern means.
    out = {}
    for name, escape in (("DIGIT", rb"\d"), ("SPACE", rb"\s"), ("WORD", rb"\w")):
        chars = frozenset(b for b in range(256) if re.fullmatch(escape, bytes([b])))
        out[f"CATEGORY_{name}"] = chars
        out[f"CATEGORY_NOT_{name}"] = _ALL - chars
    return out


_CATEGORIES = _category_sets()


def _fold(chars: frozenset[int]) -> frozenset[int]:
    # re.IGNORECASE on bytes folds ASCII letters only, like bytes.lower() / bytes.upper().
    return frozenset(c for b in chars for c in {b, *bytes([b]).lower(), *bytes([b]).upper()})


def _chars(chars: frozenset[int]) -> _Chars:
    if not chars:
        raise _Untranslatable("empty character set")
    return _Chars(chars)


@dataclass(frozen=True, slots=True)
class _Flags:
    ignore_case: bool
    dotall: bool

    def fold(self, chars: frozenset[int]) -> frozenset[int]:
        return _fold(chars) if self.ignore_case else chars

    def scoped(self, add: int, remove: int) -> _Flags:
        if (add | remove) & re.LOCALE:
            raise _Untranslatable("locale flag")
        return _Flags(
            (self.ignore_case or bool(add & re.IGNORECASE)) and not remove & re.IGNORECASE,
            (self.dotall or bool(add & re.DOTALL)) and not remove & re.DOTALL,
        )


def _class_chars(items: list[tuple[Any, Any]]) -> tuple[frozenset[int], bool]:
    chars: set[int] = set()
    negate = False
    for op, av in items:
        name = op.name
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            chars.add(av)
        elif name == "RANGE":
            chars.update(range(av[0], av[1] + 1))
        elif name == "CATEGORY" and av.name in _CATEGORIES:
            chars |= _CATEGORIES[av.name]
        else:
            raise _Untranslatable(f"class item {name}")
    return frozenset(chars), negate


_AT = {
    "AT_BEGINNING": b"^",
    "AT_BEGINNING_STRING": b"^",  # \A: the line's start is a buffer line start
    "AT_END": b"$",
    "AT_END_STRING": b"$",
    "AT_BOUNDARY": rb"\b",
    "AT_NON_BOUNDARY": rb"\B",
}


def _convert_seq(items: Any, flags: _Flags) -> _Node:
    nodes = tuple(_convert(op.name, av, flags) for op, av in items)
    return nodes[0] if len(nodes) == 1 else _Seq(nodes)


def _convert_in(av: Any, flags: _Flags) -> _Node:
    chars, negate = _class_chars(av)
    # Like sre: a byte is in a caseless class if its lower case is in the lowered class,
    # negated or not.
    chars = flags.fold(chars)
    return _chars(_ALL - chars if negate else chars)


def _convert(name: str, av: Any, flags: _Flags) -> _Node:  # noqa: PLR0911, PLR0912
    if name == "LITERAL":
        return _Chars(flags.fold(frozenset((av,))))
    if name == "NOT_LITERAL":
        return _Chars(_ALL - flags.fold(frozenset((av,))))
    if name == "ANY":
        return _Chars(_ALL if flags.dotall else _ALL - {_NL[0]})
    if name == "IN":
        return _convert_in(av, flags)
    if name == "BRANCH":
        return _Alt(tuple(_convert_seq(alt, flags) for alt in av[1]))
    if name == "SUBPATTERN":
        _group, add, remove, body = av
        return _convert_seq(body, flags.scoped(add, remove))
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        lo, hi, body = av
        # Laziness and possessiveness choose among matches; a prefilter wants them all.
        return _Repeat(_convert_seq(body, flags), lo, None if hi == _constants.MAXREPEAT else hi)
    if name == "ATOMIC_GROUP":
        return _convert_seq(av, flags)
    if name == "AT" and av.name in _AT:
        return _Anchor(_AT[av.name])
    if name in ("ASSERT", "ASSERT_NOT"):
        return _EMPTY  # dropping a condition only widens the match
    if name == "GROUPREF":
        return _Repeat(_Chars(_ALL), 0, None)
    if name == "GROUPREF_EXISTS":
        _group, yes, no = av
        return _Alt((_convert_seq(yes, flags), _convert_seq(no or [], flags)))
    if name == "CATEGORY" and av.name in _CATEGORIES:
        return _Chars(_CATEGORIES[av.name])
    raise _Untranslatable(name)


def translate(pattern: str, ignore_case: bool) -> _Node:
    """The pattern as the IR; matches of the IR are a superset of the pattern's line matches."""
    flags = re.MULTILINE | (re.IGNORECASE if ignore_case else 0)
    parsed = _parser.parse(pattern.encode(), flags)
    start = _Flags(False, False).scoped(parsed.state.flags, 0)
    return _convert_seq(parsed, start)


def _width(node: _Node) -> tuple[int, int | None]:
    if isinstance(node, _Chars):
        return 1, 1
    if isinstance(node, _Anchor):
        return 0, 0
    if isinstance(node, _Repeat):
        lo, hi = _width(node.item)
        top = None if hi is None or node.hi is None else hi * node.hi
        return lo * node.lo, (0 if node.hi == 0 else top)
    widths = [_width(item) for item in node.items]
    if isinstance(node, _Seq):
        highs = [hi for _, hi in widths]
        return sum(lo for lo, _ in widths), None if None in highs else sum(h or 0 for h in highs)
    if not widths:
        return 0, 0
    highs = [hi for _, hi in widths]
    return min(lo for lo, _ in widths), None if None in highs else max(h or 0 for h in highs)


def min_width(node: _Node) -> int:
    return _width(node)[0]


def prefix(node: _Node) -> _Node:
    """The shortest start of `node` that every match of it begins with.

    Lines holding a match of `node` hold one of its prefix, so the prefix is as good a
    prefilter; but it ends in a bounded part, so Hyperscan reports it once per occurrence
    instead of at every byte an unbounded tail could end on.
    """
    if isinstance(node, _Seq):
        items = list(node.items)
        # Optional trailing parts filter nothing; anchors cost nothing and still filter.
        while items and min_width(items[-1]) == 0 and not isinstance(items[-1], _Anchor):
            items.pop()
        if items and not isinstance(items[-1], _Anchor):
            items[-1] = prefix(items[-1])
        return _Seq(tuple(items))
    if isinstance(node, _Alt):
        if min_width(node) == 0:
            return _EMPTY
        return _Alt(tuple(prefix(item) for item in node.items))
    if isinstance(node, _Repeat):
        if node.lo == 0:
            return _EMPTY
        head = (_Repeat(node.item, node.lo - 1, node.lo - 1),) if node.lo > 1 else ()
        return _Seq((*head, prefix(node.item)))
    return node


def _byte(code: int) -> bytes:
    char = bytes((code,))
    return char if char.isalnum() and code < 128 else b"\\x%02x" % code


def _class(chars: frozenset[int]) -> bytes:
    if len(chars) == 1:
        return _byte(next(iter(chars)))
    out = [b"["]
    codes = sorted(chars)
    start = prev = codes[0]
    for code in [*codes[1:], -1]:
        if code == prev + 1:
            prev = code
            continue
        out.append(_byte(start) if start == prev else _byte(start) + b"-" + _byte(prev))
        start = prev = code
    out.append(b"]")
    return b"".join(out)


def _quantifier(lo: int, hi: int | None) -> bytes:
    if hi is None:
        return {0: b"*", 1: b"+"}.get(lo, b"{%d,}" % lo)
    if lo == hi:
        return b"{%d}" % lo
    return b"?" if (lo, hi) == (0, 1) else b"{%d,%d}" % (lo, hi)


def emit(node: _Node) -> bytes:
    """The IR as a pattern both dialects read alike (flags: MULTILINE only)."""
    if isinstance(node, _Chars):
        return _class(node.chars)
    if isinstance(node, _Anchor):
        return node.code
    if isinstance(node, _Repeat):
        body = emit(node.item)
        if not isinstance(node.item, _Chars):
            body = b"(?:" + body + b")"
        return body + _quantifier(node.lo, node.hi)
    if isinstance(node, _Seq):
        return b"".join(emit(item) for item in node.items)
    return b"(?:" + b"|".join(emit(item) for item in node.items) + b")"


def lowered(node: _Node) -> _Node:
    """The IR for a buffer passed through bytes.lower(): every byte set mapped the same way,
    which keeps the match a superset (and exact for the caseless parts)."""
    if isinstance(node, _Chars):
        return _Chars(frozenset(bytes(node.chars).lower()))
    if isinstance(node, _Anchor):
        return node
    if isinstance(node, _Repeat):
        return _Repeat(lowered(node.item), node.lo, node.hi)
    return type(node)(tuple(lowered(item) for item in node.items))


# --- required literals ------------------------------------------------------------------
# Without Hyperscan, bytes.find() and `re` searches for a pattern that starts with a literal
# are the fast searches Python has, at about one pass over the buffer per string. So the
# `re` engine does not search for the patterns but for strings one of which every match
# contains; `options` lists the sets of such strings a pattern offers, and the engine picks
# one set per pattern from how often their strings occur in the logs (see _Plain).

Literals = frozenset[bytes]
_MAX_LITERALS = 16  # a larger set is not worth looking for
_MIN_LITERAL = 3  # shorter strings occur on too many lines to narrow anything down
_SHARED = 4  # strings cut down to a common part this long are one string instead of several
_SMALL_SET = 4  # a byte set this small is spelled out as alternatives
_NOTHING: Literals = frozenset((b"",))
_PER_ALTERNATIVE = 3  # sets tried per alternative of an alternation ...
_COMBINATIONS = 16  # ... and combinations of them


def _spelled(node: _Node) -> Literals | None:
    """Every string `node` can match, if they are few (an anchor matches the empty string)."""
    if isinstance(node, _Chars):
        small = len(node.chars) <= _SMALL_SET
        return frozenset(bytes((c,)) for c in node.chars) if small else None
    if isinstance(node, _Anchor):
        return _NOTHING
    if isinstance(node, _Repeat):
        return _spelled_repeat(node)
    parts = [_spelled(item) for item in node.items]
    known = [part for part in parts if part is not None]
    if len(known) < len(parts):
        return None
    if isinstance(node, _Alt):
        union = Literals().union(*known)
        return union if len(union) <= _MAX_LITERALS else None
    return _product(known)


def _spelled_repeat(node: _Repeat) -> Literals | None:
    if node.hi is None or node.hi > 1:
        return None
    if node.hi == 0:
        return _NOTHING
    body = _spelled(node.item)
    if body is None or node.lo > 0:
        return body
    return body | _NOTHING


def _product(parts: list[Literals]) -> Literals | None:
    out = _NOTHING
    for part in parts:
        out = frozenset(a + b for a in out for b in part)
        if len(out) > _MAX_LITERALS:
            return None
    return out


def _common(literals: Literals) -> Literals:
    """{the longest part all the strings share} if it is long enough, else the strings."""
    if len(literals) < 2:
        return literals
    shortest = min(literals, key=len)
    for size in range(len(shortest), _SHARED - 1, -1):
        for start in range(len(shortest) - size + 1):
            part = shortest[start : start + size]
            if all(part in literal for literal in literals):
                return frozenset((part,))
    return literals


def _usable(literals: Literals | None) -> list[Literals]:
    """The set, and the part its strings share (fewer passes, more lines), if long enough."""
    if not literals or len(literals) > _MAX_LITERALS:
        return []
    found = dict.fromkeys((literals, _common(literals)))
    return [option for option in found if min(map(len, option)) >= _MIN_LITERAL]


def _rank(literals: Literals) -> tuple[int, int]:
    return len(literals), -min(map(len, literals))


def options(node: _Node) -> list[Literals]:
    """Sets of strings of which every match of `node` contains one (each set will do)."""
    if isinstance(node, _Repeat):
        return options(node.item) if node.lo >= 1 else []
    if isinstance(node, _Alt):
        # Each alternative must bring one of its own sets: a few combinations of them, since
        # which is rarer is only known from the logs.
        each = [
            sorted(dict.fromkeys(options(item)), key=_rank)[:_PER_ALTERNATIVE]
            for item in node.items
        ]
        if not all(each):
            return []
        combined = itertools.islice(itertools.product(*each), _COMBINATIONS)
        return [option for parts in combined for option in _usable(Literals().union(*parts))]
    if isinstance(node, _Seq):
        found = [option for run in _runs(node.items) for option in _usable(run)]
        return found + [option for item in node.items for option in options(item)]
    return _usable(_spelled(node))


def _runs(items: tuple[_Node, ...]) -> list[Literals]:
    """The strings of each run of consecutive spellable items: a literal split over several
    items, like `rate[ _-]?limit`."""
    out: list[Literals] = []
    run: list[Literals] = []
    for item in items:
        spelled = _spelled(item)
        if spelled is not None and _product([*run, spelled]) is not None:
            run.append(spelled)
            continue
        out += [joined for joined in (_product(run),) if joined]
        run = [spelled] if spelled is not None else []
    out += [joined for joined in (_product(run),) if joined]
    return [literals for literals in out if b"" not in literals]


# --- compiled patterns ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Prefilter:
    """How candidate lines for one pattern are found."""

    pattern: bytes  # the translated prefix, for Hyperscan; MULTILINE
    # The `re` engine searches the lowered buffer: with one of these sets of strings, else
    # with this regex.
    options: tuple[Literals, ...]
    re_pattern: bytes
    empty: bool  # can match the empty string: Hyperscan would report every offset
    exact: bool  # False: untranslatable, every line is a candidate


_EVERY_LINE = _Prefilter(b"^", (), b"^", empty=True, exact=False)


def _prefilter(pattern: str, ignore_case: bool) -> _Prefilter:
    try:
        node = prefix(translate(pattern, ignore_case))
    except (_Untranslatable, RecursionError):
        return _EVERY_LINE
    low = lowered(node)
    found = tuple(dict.fromkeys(options(low)))
    return _Prefilter(emit(node), found, emit(low), empty=min_width(node) == 0, exact=True)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One rule variant or breaker entry, as the scan uses it."""

    slot: int  # rules: index of the rule name in rule order; breakers: one each, after those
    name: str  # rule name, or the breaker's default name
    regex: re.Pattern[bytes]
    labels: tuple[tuple[str, bool], ...]  # per label: (group name or static value, is_group)
    state: str = ""  # breakers only
    prefilter: _Prefilter = _EVERY_LINE
    fixed: tuple[str, ...] | None = None  # the labels, when none is captured

    def label_values(self, match: re.Match[bytes]) -> tuple[str, ...]:
        if self.fixed is not None:
            return self.fixed
        out = []
        for value, is_group in self.labels:
            if not is_group:
                out.append(value)
                continue
            got = match.group(value)
            out.append("" if got is None else got.decode("utf-8", "replace"))
        return tuple(out)

    def breaker_name(self, match: re.Match[bytes]) -> str:
        if "breaker" in self.regex.groupindex:
            got = match.group("breaker")
            if got:
                return got.decode("utf-8", "replace")
        return self.name


def _rule_entry(rule: RuleConfig, slot: int, label_names: tuple[str, ...]) -> _Entry:
    labels = tuple(
        (rule.labels[name], False) if name in rule.labels else (name, True) for name in label_names
    )
    fixed = None if rule.groups() else tuple(value for value, _ in labels)
    prefilter = _prefilter(rule.match, rule.ignore_case)
    return _Entry(slot, rule.name, rule.regex, labels, "", prefilter, fixed)


def _breaker_entry(breaker: BreakerConfig, slot: int) -> _Entry:
    prefilter = _prefilter(breaker.match, breaker.ignore_case)
    return _Entry(slot, breaker.breaker, breaker.regex, (), breaker.state, prefilter)


# --- candidate finding ------------------------------------------------------------------

Candidates = dict[int, set[int]]  # line start -> entry indexes


class _Plain:
    """The `re` engine's candidates, found in the lowered buffer.

    Each pattern needs one string out of a set (see `options`); all the strings are found
    in a few passes: `re` searches fast only for a pattern that starts with a literal, so
    the strings are grouped by one of their rarer bytes, and each group is one pattern that
    starts with that byte and checks the rest around it (fixed-width lookbehind and
    lookahead, so no hit consumes another's bytes). Patterns without strings get a regex
    search loop of their own, jumping to the next line after each hit; that is exact too: a
    line's own match is a match in the buffer (the translation has no cross-line context),
    so the leftmost match from a line start is in that line or later.

    Which set to use depends on how often the strings occur, so the plan is made from a
    sample of the first buffers scanned.
    """

    def __init__(self, entries: Sequence[_Entry], indexes: Sequence[int]) -> None:
        self._options = {i: entries[i].prefilter.options for i in indexes}
        self.searches = [
            (i, re.compile(entries[i].prefilter.re_pattern, re.MULTILINE))
            for i in indexes
            if not entries[i].prefilter.options
        ]
        self.strings: dict[bytes, list[int]] = {}  # string -> entries it finds lines for
        self.passes: list[tuple[re.Pattern[bytes], list[list[int]]]] = []  # entries per group
        self.checks: dict[int, tuple[_Search, ...]] = {}  # see RuleSet._confirm
        self._sampled = 0

    def plan(self, sample: bytes) -> None:
        """Choose strings by their frequency in `sample` (lowered complete lines)."""
        lines = max(sample.count(_NL), 1)
        every = {s for options in self._options.values() for o in options for s in o}
        share = {s: sample.count(s) / lines for s in every}  # ~ share of lines holding it

        def cost(option: Literals) -> float:
            return sum(share[s] for s in option) + _STRING_COST * len(option)

        strings: dict[bytes, list[int]] = {}
        checks: dict[int, tuple[_Search, ...]] = {}
        for index, options in self._options.items():
            if not options:
                continue
            ranked = sorted(options, key=cost)
            for string in ranked[0]:
                strings.setdefault(string, []).append(index)
            # The rarest other sets, to test on a candidate line before the regex.
            checks[index] = tuple(_any_of(option) for option in ranked[1 : 1 + _CHECKS])
        self.strings, self.checks = _collapse(strings), checks
        self.passes = _passes(self.strings, sample)
        self._sampled = len(sample)

    def candidates(self, data: bytes, out: Candidates) -> None:
        if not self._options:
            return
        buffer = data.lower()  # one byte per byte: offsets stay
        if self._sampled < min(len(buffer), _SAMPLE) // 2:
            self.plan(buffer[: buffer.rfind(_NL, 0, _SAMPLE) + 1] or buffer)
        rfind, find = data.rfind, data.find
        for regex, owners in self.passes:
            lo, hi, current = 0, -1, set[int]()
            for hit in regex.finditer(buffer):
                start = hit.start()
                if not lo <= start <= hi:
                    lo = rfind(_NL, 0, start) + 1
                    hi = find(_NL, start)
                    current = out.setdefault(lo, set())
                current.update(owners[hit.lastindex or 0])
        for index, regex in self.searches:
            search, pos = regex.search, 0
            while (found := search(buffer, pos)) is not None:
                start = found.start()
                out.setdefault(rfind(_NL, 0, start) + 1, set()).add(index)
                pos = find(_NL, start) + 1
                if pos == 0:
                    break


_Search = Callable[[bytes], object]
_SAMPLE = 1 << 20  # bytes of a buffer the plan is made from; re-planned until this is seen
_STRING_COST = 0.002  # one more string to look for, in lines handled
_CHECKS = 2


def _collapse(strings: dict[bytes, list[int]]) -> dict[bytes, list[int]]:
    """A string holding another string looked for is found through that one (one string
    fewer, a superset of lines)."""
    out: dict[bytes, list[int]] = {}
    for string in sorted(strings, key=len):
        into = next((kept for kept in out if kept in string), string)
        out.setdefault(into, []).extend(i for i in strings[string] if i not in out.get(into, ()))
    return out


def _any_of(strings: Literals) -> _Search:
    return re.compile(b"|".join(re.escape(string) for string in sorted(strings))).search


def _passes(
    strings: dict[bytes, list[int]], sample: bytes
) -> list[tuple[re.Pattern[bytes], list[list[int]]]]:
    """One regex per group of strings that share an anchor byte and can never match at the
    same anchor (an alternation reports only one of them); group i names string i."""
    counts = Counter(sample)
    groups: list[tuple[int, list[tuple[bytes, int]]]] = []
    for string in sorted(strings, key=len, reverse=True):
        anchor = min(range(len(string)), key=lambda i: (counts[string[i]], -i))
        home = next(
            (
                members
                for byte, members in groups
                if byte == string[anchor]
                and not any(_overlap(string, anchor, *other) for other in members)
            ),
            None,
        )
        if home is None:
            groups.append((string[anchor], home := []))
        home.append((string, anchor))
    return [(_group_regex(byte, members), _owners(members, strings)) for byte, members in groups]


def _overlap(one: bytes, anchor: int, other: bytes, other_anchor: int) -> bool:
    """Whether some text holds both strings with their anchors on the same byte."""
    shift = other_anchor - anchor
    return all(one[i] == other[i + shift] for i in range(len(one)) if 0 <= i + shift < len(other))


def _group_regex(byte: int, members: list[tuple[bytes, int]]) -> re.Pattern[bytes]:
    # Starting with a literal byte makes `re` search with memchr; everything else is
    # zero-width, so a hit moves on by one byte.
    alternatives = [
        b"(?<="
        + re.escape(string[: anchor + 1])
        + b")(?=("
        + re.escape(string[anchor + 1 :])
        + b"))"
        for string, anchor in members
    ]
    return re.compile(re.escape(bytes((byte,))) + b"(?:" + b"|".join(alternatives) + b")")


def _owners(members: list[tuple[bytes, int]], strings: dict[bytes, list[int]]) -> list[list[int]]:
    return [[], *(strings[string] for string, _ in members)]


@lru_cache(maxsize=16)
def _database(ids: tuple[int, ...], patterns: tuple[bytes, ...], flags: tuple[int, ...]) -> Any:
    """A compiled block-mode database, or None if Hyperscan refuses a pattern.

    Cached: sources sharing packs, and reloads, compile once (a third of a second for the
    packaged packs). A database is read-only; scans need a scratch space each.
    """
    if not ids:
        return None
    hs = _hyperscan()
    db = hs.Database(mode=hs.HS_MODE_BLOCK)
    try:
        db.compile(expressions=list(patterns), ids=list(ids), elements=len(ids), flags=list(flags))
    except hs.error:
        return None
    return db


class _Hyperscan:
    """One block-mode database for every pattern it can take; `indexes` says which."""

    def __init__(self, entries: Sequence[_Entry]) -> None:
        self._hs = _hyperscan()
        self._local = threading.local()
        hs = self._hs
        plain = hs.HS_FLAG_MULTILINE
        wanted = {
            i: entry.prefilter.pattern
            for i, entry in enumerate(entries)
            if entry.prefilter.exact and not entry.prefilter.empty
        }
        flags = dict.fromkeys(wanted, plain)
        self._db = self._compile(wanted, flags)
        if self._db is None:
            # Some pattern is beyond Hyperscan (its limits are its own to judge): find which.
            # Its approximate prefilter mode still yields a superset; failing that, `re`.
            for index, pattern in wanted.items():
                for option in (plain, plain | hs.HS_FLAG_PREFILTER, None):
                    if option is None or self._compile({index: pattern}, {index: option}):
                        break
                if option is None:
                    del flags[index]
                else:
                    flags[index] = option
            wanted = {i: wanted[i] for i in flags}
            self._db = self._compile(wanted, flags)
        self.indexes = frozenset(wanted) if self._db is not None else frozenset()

    def _compile(self, patterns: dict[int, bytes], flags: dict[int, int]) -> Any:
        ids = tuple(sorted(patterns))
        return _database(ids, tuple(patterns[i] for i in ids), tuple(flags[i] for i in ids))

    def _scratch(self) -> Any:
        # A scratch space serves one scan at a time: one per thread.
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._hs.Scratch(self._db)
        return scratch

    def candidates(self, data: bytes, out: Candidates) -> None:
        if self._db is None:
            return
        rfind, find = data.rfind, data.find
        # The line of the last report: reports come in end-offset order, so most of them
        # land on the line just seen and cost no search.
        lo, hi, current = 0, -1, set[int]()

        def on_match(index: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
            nonlocal lo, hi, current
            if not lo <= end <= hi:
                lo = rfind(_NL, hi if 0 <= hi < end else 0, end) + 1
                hi = find(_NL, end)
                current = out.setdefault(lo, set())
            current.add(index)

        self._db.scan(data, match_event_handler=on_match, scratch=self._scratch())


# --- the rule set -----------------------------------------------------------------------


class RuleSet:
    """A source's rules and breakers, compiled for scanning buffers of complete lines.

    engine: "hyperscan", "re", or None for the best available (available_engine()).
    label_names, max_values, static_series describe each rule name for the counters, in
    rule order (the order names first appear in `rules`).
    """

    def __init__(
        self,
        rules: Sequence[RuleConfig],
        breakers: Sequence[BreakerConfig] = (),
        engine: str | None = None,
    ) -> None:
        self.engine = _choose_engine(engine)
        check_variants(list(rules))
        self.label_names: dict[str, tuple[str, ...]] = {}
        self.max_values: dict[str, int] = {}
        self.static_series: dict[str, list[tuple[str, ...]]] = {}
        for rule in rules:
            self._describe(rule)
        slots = {name: slot for slot, name in enumerate(self.label_names)}
        # Grouped by rule order, variants in list order, breakers last: visiting a line's
        # candidates in index order is then the order results are due in.
        ordered = sorted(rules, key=lambda rule: slots[rule.name])  # stable: keeps variants
        # A variant repeating an earlier one of its rule (packs overlap) can never come first.
        ordered = _first_of_each(ordered)
        self._entries: list[_Entry] = [
            _rule_entry(rule, slots[rule.name], self.label_names[rule.name]) for rule in ordered
        ]
        self._first_breaker = len(self._entries)
        self._entries += [
            _breaker_entry(breaker, len(slots) + i) for i, breaker in enumerate(breakers)
        ]
        self._hyperscan = _Hyperscan(self._entries) if self.engine == "hyperscan" else None
        done = self._hyperscan.indexes if self._hyperscan else frozenset()
        plain = [i for i in range(len(self._entries)) if i not in done]
        self._plain = _Plain(self._entries, plain)

    def _describe(self, rule: RuleConfig) -> None:
        names = self.label_names.setdefault(rule.name, rule.label_names())
        self.max_values.setdefault(rule.name, rule.max_values)
        series = self.static_series.setdefault(rule.name, [])
        if not rule.groups():
            values = tuple(rule.labels[name] for name in names)
            if values not in series:
                series.append(values)

    def scan(self, data: bytes) -> tuple[list[Match], list[BreakerEvent]]:
        """Matches and breaker events of a buffer of complete lines, each ending in b"\\n".

        The result is what a per-line loop would give, only faster: on each line (without
        its newline), for each rule name the first variant in list order whose
        regex.search() finds a match, and the first breaker entry that does. Results come in
        line order, the matches of a line in rule order; offsets are where lines start.
        """
        candidates: Candidates = {}
        if self._hyperscan is not None:
            self._hyperscan.candidates(data, candidates)
        self._plain.candidates(data, candidates)
        return self._confirm(data, candidates)

    def _confirm(
        self, data: bytes, candidates: Candidates
    ) -> tuple[list[Match], list[BreakerEvent]]:
        matches: list[Match] = []
        events: list[BreakerEvent] = []
        entries, first_breaker, end = self._entries, self._first_breaker, len(data)
        # The `re` engine's candidate lines hold *one* required string; most false ones lack
        # another, which a substring test finds faster than the regex.
        checks = self._plain.checks
        find = data.find
        for start in sorted(candidates):
            if start >= end:
                continue  # a report past the last newline: no line there
            line = data[start : find(_NL, start)]
            lower = b""  # the lowered line, made if a check needs it
            done = -1  # slot of the rule matched last: each rule counts once per line
            for index in sorted(candidates[start]):
                entry = entries[index]
                if entry.slot == done:
                    continue
                if index in checks:
                    lower = lower or line.lower()
                    if not all(search(lower) for search in checks[index]):
                        continue
                found = entry.regex.search(line)
                if found is None:
                    continue
                if index >= first_breaker:
                    events.append(BreakerEvent(entry.breaker_name(found), entry.state, start))
                    break
                matches.append(Match(entry.name, entry.label_values(found), start))
                done = entry.slot
        return matches, events


def _first_of_each(rules: list[RuleConfig]) -> list[RuleConfig]:
    seen: set[tuple[str, str, bool]] = set()
    out = []
    for rule in rules:
        key = (rule.name, rule.match, rule.ignore_case)
        if key not in seen:
            seen.add(key)
            out.append(rule)
    return out


def _choose_engine(engine: str | None) -> str:
    if engine is None:
        return available_engine()
    if engine not in ENGINES:
        raise ValueError(f"unknown rule engine {engine!r} (known: {', '.join(ENGINES)})")
    if engine == "hyperscan" and _hyperscan() is None:
        raise ValueError("rule engine 'hyperscan' is not installed")
    return engine
