"""Heading anchors as Git forges render Markdown (GitHub's github-slugger, GitLab, Gitea).

Lower-case; letters of any script, marks, digits, `_` and `-` are kept, every other symbol
and punctuation mark is dropped; each space becomes `-`. A heading's later repeats in one
document get `-1`, `-2`, ...: "증상" is `#증상`, its second occurrence `#증상-1`.
"""

from __future__ import annotations

import unicodedata


def slug(heading: str) -> str:
    kept = [
        ch
        for ch in heading.strip().lower()
        if ch in " -" or unicodedata.category(ch)[0] in "LMN" or unicodedata.category(ch) == "Pc"
    ]
    return "".join(kept).replace(" ", "-")


def anchor(heading: str, occurrence: int = 0) -> str:
    """The anchor of the `occurrence`-th (0: first) heading with this text in a document."""
    base = slug(heading)
    return f"{base}-{occurrence}" if occurrence else base
