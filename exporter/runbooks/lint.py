"""`lint-runbooks`: the catalog checked against the runbook documents themselves.

For each document given, three kinds of finding:

- an alert whose section is not a heading of the document, or names an occurrence the document
  does not have, or whose link would land on another heading: always a failure (the alert's
  link would be dead or wrong);
- an in-document link (`[text](#anchor)`) whose anchor no heading has: a warning (the
  operators' document is theirs to fix; the Trader Bot table of contents has three);
- an actionable section no alert covers: a warning, so the catalog can be filled step by step.

`strict` turns the warnings into failures.

Which sections are actionable is per document (POLICIES): headings at the levels that name a
failure or a procedure, except reference sections (quick checks, command collections,
contacts, links) and what lies under them. A section with actionable sections inside it is
covered through them and is not listed itself; an alert covers the section it points at and
every section that contains it, not the sections inside it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from exporter.runbooks.catalog import GROUPS, AlertRule, Catalog, runbook_url
from exporter.runbooks.slug import Located, outline, prose_lines


@dataclass(frozen=True)
class Policy:
    levels: frozenset[int]  # heading levels of actionable sections
    reference: tuple[str, ...] = ()  # headings (with their subsections) that are not


POLICIES: dict[str, Policy] = {
    # `###`: scenarios 1-12, the performance checks and the recovery procedures; the quick
    # diagnosis (`## 빠른 진단`: a status overview and a triage table) points into them.
    "trader-bot": Policy(frozenset({3}), ("빠른 진단",)),
    # `##`: one failure each; `####`: the causes of a failed start. The `###` 증상/진단/해결
    # are parts of their failure, not sections of their own.
    "alphaengine": Policy(frozenset({2, 4}), ("진단 명령어 모음", "긴급 연락처", "관련 문서")),
    # botwatch's own runbook: one `##` section per alert.
    "botwatch": Policy(frozenset({2})),
}

# `[text](#anchor)`, `[text](<#anchor> "title")`, `[ref]: #anchor` and `href="#anchor"`.
_INLINE_LINK = re.compile(r"\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?#([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
_REF_DEF = re.compile(r"^ {0,3}\[([^\]]+)\]:\s*<?#([^\s>]*)>?")
_HREF = re.compile(r"href=[\"']#([^\"']*)[\"']")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


@dataclass(frozen=True)
class Finding:
    doc: str
    message: str
    failure: bool

    def __str__(self) -> str:
        return (
            f"{self.doc}: {self.message}"
            if self.failure
            else f"{self.doc}: warning: {self.message}"
        )


@dataclass(frozen=True)
class Link:
    line: int
    text: str
    anchor: str  # decoded


def links(markdown: str) -> list[Link]:
    """In-document links outside code (fenced blocks and code spans)."""
    found = []
    for line in prose_lines(markdown):
        text = _CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line.text)
        matches = [(m.start(), m.group(1), m.group(2)) for m in _INLINE_LINK.finditer(text)]
        matches += [(m.start(), m.group(1), m.group(2)) for m in _REF_DEF.finditer(text)]
        matches += [(m.start(), "", m.group(1)) for m in _HREF.finditer(text)]
        for _, label, target in sorted(matches):
            if target:  # a bare `#` is the top of the page
                found.append(Link(line.number, label, unquote(target)))
    return found


def _same(section: str, heading: Located) -> bool:
    wanted = " ".join(section.split())
    return wanted in (heading.heading.text, " ".join(heading.raw.split()))


def _resolve(
    doc: str, rule: AlertRule, found: list[Located]
) -> tuple[Located | None, Finding | None]:
    """The heading an alert points at, or the failure that says why there is none."""
    ref = rule.runbook
    wanted = runbook_url(ref, {doc: ""}).removeprefix("#")
    matches = [h for h in found if _same(ref.section, h)]
    if not matches:
        namesake = next((h for h in found if h.heading.anchor == wanted), None)
        if namesake is not None:
            message = (
                f'alert {rule.alert} names its section "{ref.section}", but the document writes '
                f'it "{namesake.raw}" (#{wanted}, line {namesake.line})'
            )
        else:
            message = (
                f"alert {rule.alert} points at a heading that does not exist: "
                f'"{ref.section}" (#{wanted})'
            )
        return None, Finding(doc, message, failure=True)
    if ref.occurrence >= len(matches):
        message = (
            f"alert {rule.alert} points at a heading that does not exist: "
            f'"{ref.section}" occurrence {ref.occurrence} (#{wanted}); '
            f"the document has {len(matches)} (occurrence 0 to {len(matches) - 1})"
        )
        return None, Finding(doc, message, failure=True)
    target = matches[ref.occurrence]
    if target.heading.anchor != wanted:
        # Another heading took the anchor first ("a 1" before the second "a"): the forge
        # numbers this one differently and the link would land elsewhere.
        message = (
            f'alert {rule.alert} links to #{wanted}, but "{ref.section}" occurrence '
            f"{ref.occurrence} (line {target.line}) is #{target.heading.anchor}"
        )
        return None, Finding(doc, message, failure=True)
    return target, None


def _section_ends(found: list[Located]) -> list[int]:
    """For each heading, the index of the first heading after its section."""
    ends = []
    for i, here in enumerate(found):
        end = i + 1
        while end < len(found) and found[end].heading.level > here.heading.level:
            end += 1
        ends.append(end)
    return ends


def actionable(found: list[Located], policy: Policy) -> list[int]:
    """Indices of the actionable sections that have no actionable section inside them."""
    ends = _section_ends(found)
    skipped: set[int] = set()
    for i, here in enumerate(found):
        if here.heading.text in policy.reference:
            skipped.update(range(i, ends[i]))
    candidates = [
        i for i, h in enumerate(found) if h.heading.level in policy.levels and i not in skipped
    ]
    chosen = set(candidates)
    return [i for i in candidates if not any(j in chosen for j in range(i + 1, ends[i]))]


@dataclass(frozen=True)
class DocumentResult:
    findings: list[Finding]
    sections: int  # actionable sections (those listed when uncovered)
    covered: int


def lint_document(
    doc: str, markdown: str, catalog: Catalog, policy: Policy, strict: bool = False
) -> DocumentResult:
    found = outline(markdown)
    findings: list[Finding] = []
    targets: set[int] = set()
    for _, _, rule in catalog.alerts():
        if rule.runbook.doc != doc:
            continue
        target, problem = _resolve(doc, rule, found)
        if problem is not None:
            findings.append(problem)
        if target is not None:
            targets.add(found.index(target))

    anchors = {h.heading.anchor for h in found}
    for link in links(markdown):
        if link.anchor not in anchors:
            label = f'"{link.text}" ' if link.text else ""
            message = (
                f"line {link.line}: link {label}points at a heading that does not exist "
                f"(#{link.anchor})"
            )
            findings.append(Finding(doc, message, failure=strict))

    ends = _section_ends(found)
    sections = actionable(found, policy)
    uncovered = [i for i in sections if not any(j in targets for j in range(i, ends[i]))]
    for i in uncovered:
        here = found[i]
        message = f'no alert covers "{here.raw}" (#{here.heading.anchor}, line {here.line})'
        findings.append(Finding(doc, message, failure=strict))
    return DocumentResult(findings, len(sections), len(sections) - len(uncovered))


@dataclass(frozen=True)
class Report:
    findings: list[Finding]
    notes: list[str]  # what was not checked, and each document's coverage

    @property
    def failures(self) -> int:
        return sum(1 for f in self.findings if f.failure)

    def lines(self) -> list[str]:
        warnings = len(self.findings) - self.failures
        summary = (
            f"lint-runbooks: {self.failures} problem{'s' * (self.failures != 1)}, "
            f"{warnings} warning{'s' * (warnings != 1)}"
        )
        return [*map(str, self.findings), *self.notes, summary]


def lint(documents: Mapping[str, str], catalog: Catalog, strict: bool = False) -> Report:
    """Check the documents given ({name: Markdown}); the others are skipped with a note."""
    findings: list[Finding] = []
    notes = []
    for doc in GROUPS:
        pointing = sum(1 for _, _, r in catalog.alerts() if r.runbook.doc == doc)
        alerts = f"{pointing} alert{'s' * (pointing != 1)}"
        if doc not in documents:
            notes.append(f"{doc}: not checked (no --runbook {doc}=PATH); {alerts} point at it")
            continue
        result = lint_document(doc, documents[doc], catalog, POLICIES[doc], strict)
        findings += result.findings
        notes.append(
            f"{doc}: {alerts} checked; {result.covered} of {result.sections} actionable "
            "sections covered"
        )
    return Report(findings, notes)
