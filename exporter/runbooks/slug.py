"""Heading anchors as Git forges render Markdown (GitHub's github-slugger, GitLab, Gitea).

A heading's anchor is its text (as rendered: `code`, *emphasis* and [links](x) reduced to their
words), lower-cased, with every character dropped but letters of any script, marks, decimal
and letter digits, `_`, `-` and the space; each space then becomes `-`. "시나리오 3: Rate
Limit 초과 (429 에러)" is `시나리오-3-rate-limit-초과-429-에러`. An anchor taken earlier in the
document gets `-1`, `-2`, ...: the second "증상" is `증상-1`.

`headings(markdown)` finds ATX headings (`#` to `######` at the start of a line, up to three
spaces in) outside fenced code blocks and HTML comments: runbooks are full of shell
`# comments` inside ```bash blocks, and those are not headings. Setext headings (text
underlined with `===`/`---`) are not recognised; the runbooks do not use them.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

# Symbols Unicode also counts as letters (Other_Alphabetic, category So: Ⓐ, 🄰, 🅐, 🅰 ...):
# github-slugger keeps them.
_ALPHABETIC_SYMBOLS = ((0x24B6, 0x24E9), (0x1F130, 0x1F149), (0x1F150, 0x1F169), (0x1F170, 0x1F189))


def _kept(ch: str) -> bool:
    category = unicodedata.category(ch)
    if ch in " -" or category[0] in "LM" or category in ("Nd", "Nl", "Pc"):
        return True
    return any(low <= ord(ch) <= high for low, high in _ALPHABETIC_SYMBOLS)


def slug(text: str) -> str:
    """The anchor of a heading whose rendered text is `text` (its first occurrence)."""
    return "".join(ch for ch in text.strip().lower() if _kept(ch)).replace(" ", "-")


def anchor(heading: str, occurrence: int = 0) -> str:
    """The anchor of the `occurrence`-th (0: first) heading with this text in a document,
    when no other heading's anchor collides with it (`headings()` knows for sure)."""
    base = slug(heading)
    return f"{base}-{occurrence}" if occurrence else base


class Slugger:
    """Unique anchors in document order, as github-slugger numbers them: a taken anchor gets
    the next free `-N` of its base ("a", "a" -> a-1; a later heading "a 1" -> a-1-1)."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __call__(self, text: str) -> str:
        base = result = slug(text)
        while result in self._seen:
            self._seen[base] += 1
            result = f"{base}-{self._seen[base]}"
        self._seen[result] = 0
        return result


# --- Inline Markdown to text: what the forge slugs is the heading's rendered text. ---

_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
# Escaped characters are parked in a private-use plane while the markup is taken apart.
_PARK = 0xF0000
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\](?:\([^)]*\)|\[[^\]]*\])")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_EMPHASIS = (
    re.compile(r"(\*{1,3})(?=\S)(.+?)(?<=\S)\1"),
    # `_` inside a word is a letter of it (snake_case), so only flanking runs are delimiters.
    re.compile(r"(?<![^\W_])(_{1,3})(?=\S)(.+?)(?<=\S)\1(?![^\W_])"),
    re.compile(r"(~~?)(?=\S)(.+?)(?<=\S)\1"),
)


def _plain(segment: str) -> str:
    text = _ESCAPE.sub(lambda m: chr(_PARK + ord(m.group(1))), segment)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _TAG.sub("", text)
    changed = True
    while changed:
        before = text
        for pattern in _EMPHASIS:
            text = pattern.sub(r"\2", text)
        changed = text != before
    text = html.unescape(text)
    return "".join(chr(ord(ch) - _PARK) if ord(ch) >= _PARK else ch for ch in text)


def inline_text(markdown: str) -> str:
    """The text a one-line piece of inline Markdown renders to."""
    parts, pos = [], 0
    for match in _CODE_SPAN.finditer(markdown):
        parts.append(_plain(markdown[pos : match.start()]))
        code = match.group(2)
        if code.startswith(" ") and code.endswith(" ") and code.strip():
            code = code[1:-1]
        parts.append(code)
        pos = match.end()
    parts.append(_plain(markdown[pos:]))
    return "".join(parts).strip()


# --- Block structure: which lines are headings, and which are prose (links are checked). ---

_ATX = re.compile(r"^ {0,3}(#{1,6})(?=[ \t]|$)(.*)$")
_CLOSING = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
# Fences are recognised at any indentation, so those inside list items count too.
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")
_COMMENT_OPEN = re.compile(r"^ {0,3}<!--")


class Heading(NamedTuple):
    level: int
    text: str  # as rendered (inline markup reduced to its text)
    anchor: str  # unique in its document


@dataclass(frozen=True)
class Located:
    heading: Heading
    line: int  # 1-based
    raw: str  # the heading's Markdown as written (closing #s removed)


@dataclass(frozen=True)
class Line:
    number: int  # 1-based
    text: str
    heading: tuple[int, str] | None  # (level, raw text) when this line is an ATX heading


def prose_lines(markdown: str) -> Iterator[Line]:
    """The document's lines outside fenced code blocks and HTML comments."""
    fence: tuple[str, int] | None = None  # the open fence's character and length
    in_comment = False
    for number, text in enumerate(markdown.splitlines(), start=1):
        if in_comment:
            in_comment = "-->" not in text
            continue
        opener = _FENCE.match(text)
        if fence is not None:
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= fence[1]:
                fence = None if not opener.group(2).strip() else fence
            continue
        if opener and not (opener.group(1)[0] == "`" and "`" in opener.group(2)):
            fence = (opener.group(1)[0], len(opener.group(1)))
            continue
        if _COMMENT_OPEN.match(text):
            in_comment = "-->" not in text[text.index("<!--") + 4 :]
            continue
        atx = _ATX.match(text)
        heading = None
        if atx:
            heading = (len(atx.group(1)), _CLOSING.sub("", atx.group(2).strip(" \t")).strip())
        yield Line(number, text, heading)


def outline(markdown: str) -> list[Located]:
    """Every heading with its line and Markdown source, anchors numbered as forges do."""
    unique = Slugger()
    found = []
    for line in prose_lines(markdown):
        if line.heading is not None:
            level, raw = line.heading
            text = inline_text(raw)
            found.append(Located(Heading(level, text, unique(text)), line.number, raw))
    return found


def headings(markdown: str) -> list[Heading]:
    """(level, text, anchor) of every heading, in document order."""
    return [located.heading for located in outline(markdown)]
