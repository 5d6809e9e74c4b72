"""bench/RESULTS.md holds one section per benchmark; each run replaces its own section only."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = "# Benchmark results\n\nEach section is written by its own benchmark (`make bench`).\n"


def write_section(name: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section between this benchmark's markers."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = path.read_text() if path.exists() else HEADER
    if begin not in text:
        # A file from before sections existed is one unnamed section: keep it under a marker.
        text = text if "<!-- begin " in text else HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pattern.sub(lambda _: block, text) if begin in text else text.rstrip() + "\n\n" + block
    path.write_text(text)


def demote(markdown: str) -> str:
    """One heading level down, so a benchmark's report nests under the file's title."""
    return re.sub(r"^(#+) ", r"#\1 ", markdown, flags=re.M)
