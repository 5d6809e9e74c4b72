"""From an alert's expression to the queries a dashboard panel shows (no PromQL library).

An alert is a condition: `botwatch_probe_success{probe="x"} == 0`, `increase(...[5m]) > 3`,
`a < 0.1 and predict_linear(...) < 0`. Its panel shows what the condition compares, not the
0/1 of the comparison: `conditions()` splits the expression at its top-level `and`, `or` and
`unless` and drops each operand's comparison with a constant (kept as the threshold).
`scoped()` then narrows every series selector to the dashboard's `$job` and `$instance` and
gives every `rate()`/`irate()` the `$__rate_interval` window. Windows of `increase()`,
`*_over_time()`, `predict_linear()` ... stay the alert's own, so the panel shows exactly the
value the alert compares with its threshold.

A small lexer is enough for this: strings, `{...}` matchers and `[...]` ranges are single
tokens, so nothing inside them is ever mistaken for a metric name or an operator. An
expression it cannot read is shown as written (the PromQL test then says so).
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

SET_OPERATORS = frozenset({"and", "or", "unless"})
COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
# Keywords followed by a parenthesised list of label names.
GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = SET_OPERATORS | GROUPING | {"bool", "offset", "atan2", "inf", "nan"}
# Aggregations may put `by (...)` between their name and their parenthesis.
AGGREGATIONS = frozenset(
    {
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    }
)  # fmt: skip
RATE_FUNCTIONS = frozenset({"rate", "irate"})
RELABELLING = frozenset({"label_replace", "label_join"})
RATE_WINDOW = "[$__rate_interval]"
NEGATED = {"==": "!=", "!=": "==", ">": "<=", "<": ">=", ">=": "<", "<=": ">"}
MIRRORED = {">": "<", "<": ">", ">=": "<=", "<=": ">=", "==": "==", "!=": "!="}
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}
_TWO_CHAR_OPS = ("==", "!=", ">=", "<=", "=~", "!~")
_ONE_CHAR_OPS = "+-*/%^<>@="
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)[A-Za-z0-9_.]*")


class LexError(ValueError):
    pass


@dataclass(frozen=True)
class Token:
    kind: str  # ident number string braces range lparen rparen comma op
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Condition:
    """One thing an alert compares: a query, the comparison it is in (None: none, the
    operand only filters), the constant it is compared with (None: not a constant), and the
    set operator that brought it in ("" for the first operand, "and", "or", "unless")."""

    query: str
    op: str | None = None
    threshold: float | None = None
    via: str = ""

    @property
    def firing_op(self) -> str | None:
        """The comparison as the alert fires on it: `unless x == 1` fires while x != 1."""
        if self.op is None or self.via != "unless":
            return self.op
        return NEGATED[self.op]

    def fires_on(self, value: float) -> bool | None:
        op = self.firing_op
        if op is None or self.threshold is None:
            return None
        return COMPARE[op](value, self.threshold)


def _closing(expr: str, i: int, close: str) -> int:
    """The index just past `close`, skipping quoted strings, from the opener at `i`."""
    j = i + 1
    while j < len(expr):
        ch = expr[j]
        if ch in "\"'`":
            j = _string_end(expr, j)
            continue
        if ch == close:
            return j + 1
        j += 1
    raise LexError(f"unclosed {expr[i]!r} at {i}")


def _string_end(expr: str, i: int) -> int:
    quote = expr[i]
    j = i + 1
    while j < len(expr):
        if expr[j] == "\\" and quote != "`":
            j += 2
            continue
        if expr[j] == quote:
            return j + 1
        j += 1
    raise LexError(f"unclosed string at {i}")


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "#":  # a comment, to the end of the line
            newline = expr.find("\n", i)
            i = len(expr) if newline < 0 else newline
            continue
        if ch in "\"'`":
            kind, end = "string", _string_end(expr, i)
        elif ch == "{":
            kind, end = "braces", _closing(expr, i, "}")
        elif ch == "[":
            kind, end = "range", _closing(expr, i, "]")
        elif ch in "(),":
            kind, end = {"(": "lparen", ")": "rparen", ",": "comma"}[ch], i + 1
        elif ch.isdigit() or (ch == "." and expr[i + 1 : i + 2].isdigit()):
            match = _NUMBER.match(expr, i)
            kind, end = "number", match.end() if match else i + 1
        elif (ident := _IDENT.match(expr, i)) is not None:
            kind, end = "ident", ident.end()
        elif expr[i : i + 2] in _TWO_CHAR_OPS:
            kind, end = "op", i + 2
        elif ch in _ONE_CHAR_OPS:
            kind, end = "op", i + 1
        else:
            raise LexError(f"unexpected {ch!r} at {i}")
        tokens.append(Token(kind, expr[i:end], i, end))
        i = end
    return tokens


def _matching(tokens: list[Token], i: int) -> int:
    """The index of the rparen closing the lparen at `i`."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j].kind == "lparen":
            depth += 1
        elif tokens[j].kind == "rparen":
            depth -= 1
            if depth == 0:
                return j
    raise LexError("unbalanced parentheses")


def _is_keyword(token: Token, words: frozenset[str]) -> bool:
    return token.kind == "ident" and token.text.lower() in words


def _skip_modifiers(tokens: list[Token], i: int) -> int:
    """Past `bool`, `on(...)`/`ignoring(...)` and `group_left(...)`/`group_right(...)`."""
    while i < len(tokens) and _is_keyword(tokens[i], GROUPING | {"bool"}):
        i += 1
        if i < len(tokens) and tokens[i].kind == "lparen":
            i = _matching(tokens, i) + 1
    return i


def _number(text: str) -> float:
    return float(int(text, 16)) if text.lower().startswith("0x") else float(text)


_ARITHMETIC: dict[type[ast.AST], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _evaluate(node.operand)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    raise ValueError("not a constant")


def _constant(tokens: list[Token]) -> float | None:
    """The value of a number, or of arithmetic on numbers only (`64 * 1024 * 1024`)."""
    pieces = []
    for token in tokens:
        if token.kind == "number":
            try:
                pieces.append(repr(_number(token.text)))
            except ValueError:
                return None  # a duration
        elif token.kind in ("lparen", "rparen") or (token.kind == "op" and token.text in "+-*/%^"):
            pieces.append("**" if token.text == "^" else token.text)
        else:
            return None
    try:
        return _evaluate(ast.parse(" ".join(pieces), mode="eval").body)
    except (SyntaxError, ValueError, ArithmeticError):
        return None


def _split_top_level(
    tokens: list[Token], is_split: Callable[[Token], bool]
) -> list[tuple[str, list[Token]]]:
    """The operands between top-level splitting tokens, each with the one before it."""
    parts: list[tuple[str, list[Token]]] = [("", [])]
    for token, depth in _depths(tokens):
        if depth == 0 and is_split(token):
            parts.append((token.text.lower(), []))
        else:
            parts[-1][1].append(token)
    return parts


def _text(expr: str, tokens: list[Token]) -> str:
    return expr[tokens[0].start : tokens[-1].end]


def _operand_conditions(expr: str, tokens: list[Token], via: str) -> list[Condition]:
    tokens = tokens[_skip_modifiers(tokens, 0) :]
    if not tokens:
        raise LexError("empty operand")
    if tokens[0].kind == "lparen" and _matching(tokens, 0) == len(tokens) - 1:
        return _conditions(expr, tokens[1:-1], via)
    comparisons = [i for i, t in enumerate(_top_level(tokens)) if t]
    if not comparisons and (relabelled := _relabelled(expr, tokens, via)) is not None:
        return [relabelled]
    if len(comparisons) != 1:
        return [Condition(_text(expr, tokens), via=via)]
    at = comparisons[0]
    left, op = tokens[:at], tokens[at].text
    right = tokens[_skip_modifiers(tokens, at + 1) :]
    if not left or not right:
        raise LexError("comparison without an operand")
    if (value := _constant(right)) is not None:
        return [Condition(_text(expr, left), op, value, via)]
    if (value := _constant(left)) is not None:
        return [Condition(_text(expr, right), MIRRORED[op], value, via)]
    return [
        Condition(_text(expr, left), op, None, via),
        Condition(_text(expr, right), MIRRORED[op], None, via),
    ]


def _relabelled(expr: str, tokens: list[Token], via: str) -> Condition | None:
    """`label_replace(x > 5, ...)`: the comparison inside label_replace()/label_join(), which
    keep values, taken out as if it were outside."""
    if not (
        len(tokens) > 3
        and _is_keyword(tokens[0], RELABELLING)
        and tokens[1].kind == "lparen"
        and _matching(tokens, 1) == len(tokens) - 1
    ):
        return None
    depth, end = 0, 2
    for end in range(2, len(tokens) - 1):
        depth += {"lparen": 1, "rparen": -1}.get(tokens[end].kind, 0)
        if depth == 0 and tokens[end].kind == "comma":
            break
    first = tokens[2:end]
    inner = _operand_conditions(expr, first, via) if first else []
    if len(inner) != 1 or inner[0].threshold is None:
        return None
    query = expr[tokens[0].start : first[0].start] + inner[0].query
    query += expr[first[-1].end : tokens[-1].end]
    return Condition(query, inner[0].op, inner[0].threshold, via)


def _top_level(tokens: list[Token]) -> list[bool]:
    """For each token: whether it is a comparison operator outside any parentheses."""
    return [
        depth == 0 and token.kind == "op" and token.text in COMPARISONS
        for token, depth in _depths(tokens)
    ]


def _depths(tokens: list[Token]) -> Iterator[tuple[Token, int]]:
    """Each token with the parenthesis depth after it (an opening one is inside, a closing one
    back outside)."""
    depth = 0
    for token in tokens:
        if token.kind == "lparen":
            depth += 1
        elif token.kind == "rparen":
            depth -= 1
        yield token, depth


def _conditions(expr: str, tokens: list[Token], via: str = "") -> list[Condition]:
    found: list[Condition] = []
    parts = _split_top_level(tokens, lambda t: _is_keyword(t, SET_OPERATORS))
    for i, (own, part) in enumerate(parts):
        # Inside `x unless (...)` or `x and (...)` every operand is still an exclusion or a
        # filter; the first operand of a parenthesis is whatever brought the parenthesis in.
        part_via = via if i == 0 or via in ("and", "unless") else own
        found.extend(_operand_conditions(expr, part, part_via))
    return found


def conditions(expr: str) -> list[Condition]:
    """What the alert compares, operand by operand, without duplicates; the whole
    expression when it cannot be read."""
    try:
        found = _conditions(expr, tokenize(expr))
    except LexError:
        return [Condition(expr.strip())]
    unique: dict[str, Condition] = {}
    for condition in found:
        unique.setdefault(condition.query, condition)
    return list(unique.values())


@dataclass(frozen=True)
class Selector:
    """A series selector: its metric name (None for `{...}` alone) and its matchers."""

    name: Token | None
    braces: Token | None


def _walk(tokens: list[Token]) -> tuple[list[Selector], list[Token], list[str]]:
    """The series selectors, the ranges of rate()/irate() and the functions called."""
    selectors: list[Selector] = []
    rate_ranges: list[Token] = []
    called: list[str] = []
    calls: list[str | None] = []  # the function each open parenthesis belongs to
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.kind == "ident":
            word = token.text.lower()
            if word in GROUPING and following is not None and following.kind == "lparen":
                i = _matching(tokens, i + 1) + 1
                continue
            if word == "offset":
                i += 3 if following is not None and following.text in ("+", "-") else 2
                continue
            if following is not None and following.kind == "lparen":
                calls.append(word)
                called.append(word)
                i += 2
                continue
            if word in AGGREGATIONS and following is not None and _is_keyword(following, GROUPING):
                called.append(word)
            elif word not in KEYWORDS:
                braces = following if following is not None and following.kind == "braces" else None
                selectors.append(Selector(token, braces))
                i += 2 if braces is not None else 1
                continue
        elif token.kind == "braces":
            selectors.append(Selector(None, token))
        elif token.kind == "range" and calls and calls[-1] in RATE_FUNCTIONS:
            if ":" not in token.text:  # a subquery keeps its own range and resolution
                rate_ranges.append(token)
        elif token.kind == "lparen":
            calls.append(None)
        elif token.kind == "rparen" and calls:
            calls.pop()
        i += 1
    return selectors, rate_ranges, called


def _narrow(braces: Token, matchers: str) -> str:
    inner = braces.text[1:-1].strip()
    if not inner:
        return "{" + matchers + "}"
    separator = " " if inner.endswith(",") else ", "
    return "{" + inner + separator + matchers + "}"


def scoped(query: str, matchers: str = 'job=~"$job", instance=~"$instance"') -> str:
    """`query` with `matchers` added to each series selector and `$__rate_interval` as the
    window of each rate()/irate(); unchanged if it cannot be read."""
    try:
        selectors, rate_ranges, _ = _walk(tokenize(query))
    except LexError:
        return query
    edits = [(t.start, t.end, RATE_WINDOW) for t in rate_ranges]
    for selector in selectors:
        if selector.braces is not None:
            edits.append(
                (selector.braces.start, selector.braces.end, _narrow(selector.braces, matchers))
            )
        elif selector.name is not None:
            edits.append((selector.name.end, selector.name.end, "{" + matchers + "}"))
    for start, end, replacement in sorted(edits, reverse=True):
        query = query[:start] + replacement + query[end:]
    return query


@dataclass(frozen=True)
class Shape:
    """What a query reads: metric names in order, functions called, whether it has a range
    selector, and whether it divides."""

    metrics: tuple[str, ...]
    functions: frozenset[str]
    ranged: bool
    divides: bool


def shape(query: str) -> Shape:
    try:
        tokens = tokenize(query)
        selectors, _, called = _walk(tokens)
    except LexError:
        return Shape((), frozenset(), False, False)
    return Shape(
        metrics=tuple(s.name.text for s in selectors if s.name is not None),
        functions=frozenset(called),
        ranged=any(t.kind == "range" for t in tokens),
        divides=any(t.kind == "op" and t.text == "/" for t in tokens),
    )
