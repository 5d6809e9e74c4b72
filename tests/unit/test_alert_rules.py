"""The alert rules in alerts/: promtool, freshness, style, tests per alert, runbook coverage.

- `promtool check rules` and `promtool test rules` pass on the committed files;
- the committed rule files are a fresh `render_rules(load_catalog())`;
- style, as monitoring-mixins' lint checks it, on the rendered rules;
- every alert has a promtool test that fires it and one that finds it silent;
- every alert links to a heading its document has, and every actionable section of the two
  runbooks (and of docs/botwatch-runbook.md) is linked by at least one alert.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.runbooks.catalog import (
    ALERT_NAME,
    GROUPS,
    PLACEHOLDER_BASES,
    PLACEHOLDER_GRAFANA,
    load_catalog,
    render_rules,
)
from exporter.runbooks.lint import lint
from exporter.runbooks.slug import anchor
from exporter.runbooks.slug import headings as doc_headings

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
RULE_FILES = sorted(ALERTS.glob("*.rules.yml"))
TEST_FILES = sorted((ALERTS / "tests").glob("*.test.yml"))
# The runbooks as the operators wrote them: copies under tests/fixtures/runbooks/ (CI has no
# ../shared), else the originals next to the checkout.
FIXTURE_RUNBOOKS = ROOT / "tests" / "fixtures" / "runbooks"
SEED_RUNBOOKS = ROOT.parent / "shared" / "seeds"
BOTWATCH_RUNBOOK = ROOT / "docs" / "botwatch-runbook.md"

SCRAPE_INTERVAL = 15  # seconds; what the deploy/ examples and the README assume
MIN_WINDOW = 4 * SCRAPE_INTERVAL
MIN_FOR, MAX_FOR = 60, 3600
SEVERITIES = {"critical", "warning", "info"}
# deploy/alertmanager's inhibition convention: `component` on every alert, `inhibition` on some.
INHIBITION = {"source", "stack", "exempt"}

# The label a description must name: what is broken.
SUBJECT_LABELS = {
    "container", "unit", "process", "source", "probe", "db", "path", "set", "collector",
    "mountpoint", "target", "breaker", "checkpoint", "job",
}  # fmt: skip
# Alerts about a whole host (or botwatch's one process on it): the subject is the instance.
HOST_LEVEL = {
    "TraderHostMemoryLow",
    "TraderHostCpuHigh",
    "TraderStackDown",  # every container of the stack: the host is what is left to name
    "AlphaEngineHostMemoryLow",
    "BotwatchConfigReloadFailed",
    "BotwatchKernelLogUnreadable",
}

# Headings that are not a place to send an operator from a page, per document, and why.
NOT_ACTIONABLE: dict[str, dict[str, str]] = {
    "trader-bot": {
        "Trader Bot 트러블슈팅 가이드": "the document's title",
        "목차": "the table of contents",
        "빠른 진단": "an overview: a first look at the whole stack that leads to the scenarios",
        "시스템 상태 한눈에 확인": "the overview's checklist (ps, /health, logs, df)",
        "문제 분류": "a triage table linking to scenarios 1, 3, 5, 6 and 8, each linked itself",
        "일반적인 에러 및 해결책": "a chapter heading: its scenarios 1-12 are the sections",
        "성능 문제 진단": "a chapter heading: CPU, memory leak and latency are the sections",
        "긴급 복구 절차": "a chapter heading: full recovery and rollback are the sections",
        "지원 요청": "escalation: what to send to support when the runbook did not help",
        "참고 문서": "links to other documents",
    },
    "alphaengine": {
        "AlphaEngine 문제 해결 가이드": "the document's title",
        "진단 명령어 모음": "a command reference the other sections draw on, no symptom",
        "긴급 연락처": "contacts, for when the runbook did not help",
        "관련 문서": "links to other documents",
    },
    "botwatch": {
        "botwatch runbook": "the document's title",
    },
}
# Parts of a section (symptom, diagnosis, cause, fix). An alert links to the section and the
# operator reads on through its parts, so a part is covered when its section (the nearest
# heading above it that is not a part) is linked, or when an alert links to the part itself
# (AlphaEngine's DB 손상 → 해결, the restore from backup).
PARTS = {"증상", "진단", "원인", "원인별 해결", "해결"}


# --- documents ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    occurrence: int  # among headings with the same text, 0 first (the catalog's `occurrence`)
    anchor: str  # as the forge numbers it (exporter.runbooks.slug)


def headings(markdown: str) -> list[Heading]:
    """The document's headings (slug.headings: code fences skipped), with occurrences."""
    out = []
    by_text: dict[str, int] = {}
    for h in doc_headings(markdown):
        occurrence = by_text.get(h.text, 0)
        by_text[h.text] = occurrence + 1
        out.append(Heading(h.level, h.text, occurrence, h.anchor))
    return out


def _which(text: str) -> str | None:
    first = next((h.text for h in headings(text) if h.level == 1), "")
    if "Trader Bot" in first:
        return "trader-bot"
    if "AlphaEngine" in first:
        return "alphaengine"
    return None


@cache
def runbooks() -> dict[str, str]:
    """doc name → Markdown text: the fixtures' copies if present, else the seeds."""
    for folder in (FIXTURE_RUNBOOKS, SEED_RUNBOOKS):
        found: dict[str, str] = {}
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            if path.suffix not in (".md", ".txt"):
                continue
            text = path.read_text(encoding="utf-8")
            doc = _which(text)
            if doc and doc not in found:
                found[doc] = text
        if {"trader-bot", "alphaengine"} <= set(found):
            found["botwatch"] = BOTWATCH_RUNBOOK.read_text(encoding="utf-8")
            return found
    pytest.fail(f"the runbooks are in neither {FIXTURE_RUNBOOKS} nor {SEED_RUNBOOKS}")


# --- rendered rules and tests ---------------------------------------------------------------
def _rules() -> list[dict[str, Any]]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            out.extend(group["rules"])
    return out


RULES = _rules()
RULE_IDS = [r["alert"] for r in RULES]
DURATION = re.compile(r"(\d+)(ms|[smhdwy])")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    parts = DURATION.findall(duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(int(n) * UNIT_SECONDS[u] for n, u in parts)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: install Debian's `prometheus` (make test does)")
    return subprocess.run(
        [binary, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_three_groups_are_committed() -> None:
    assert [p.name for p in RULE_FILES] == sorted(f"{g}.rules.yml" for g in GROUPS)
    assert [p.name for p in TEST_FILES] == sorted(f"{g}.test.yml" for g in GROUPS)


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", *(str(p.relative_to(ROOT)) for p in RULE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_test_rules() -> None:
    done = promtool("test", "rules", *(str(p.relative_to(ROOT)) for p in TEST_FILES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_committed_rules_are_a_fresh_render() -> None:
    fresh = render_rules(load_catalog())
    assert sorted(fresh) == [p.name for p in RULE_FILES]
    for name, text in fresh.items():
        assert (ALERTS / name).read_text(encoding="utf-8") == text, (
            f"alerts/{name} is stale: render it again from exporter/runbooks/alerts/"
        )


def test_render_takes_other_base_urls() -> None:
    bases = {doc: f"https://git.example.com/ops/{doc}.md" for doc in PLACEHOLDER_BASES}
    rendered = render_rules(load_catalog(), bases, "https://grafana.example.com/")
    for text in rendered.values():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                notes = rule["annotations"]
                assert any(notes["runbook_url"].startswith(b + "#") for b in bases.values())
                assert notes["dashboard_url"].startswith(
                    f"https://grafana.example.com/d/botwatch-{group['name']}?viewPanel="
                )


# --- style ----------------------------------------------------------------------------------
RANGE = re.compile(r"\[([0-9a-z]+)(?::[0-9a-z]*)?\]")
COUNTER = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*_total\b")
COUNTER_IN_RATE = re.compile(
    r"\b(?:rate|increase|irate)\(\s*[a-zA-Z_:][a-zA-Z0-9_:]*_total\s*(?:\{[^}]*\})?\s*\[[0-9a-z]+\]"
)
TEMPLATE = re.compile(r"\{\{.*?\}\}")
LABEL_PLACEHOLDER = re.compile(r"^\{\{ \$labels\.([a-z_]+) \}\}$")


@pytest.mark.parametrize("rule", RULES, ids=RULE_IDS)
def test_style(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert ALERT_NAME.match(name), "CamelCase names"
    assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}

    labels = rule["labels"]
    assert labels["severity"] in SEVERITIES
    assert labels["stack"] in GROUPS
    expr = rule["expr"]
    # Static, or made from the series' own name where one rule covers several components.
    assert ("component" in labels) != ('"component"' in expr), "component: static xor made"
    if "inhibition" in labels:
        assert labels["inhibition"] in INHIBITION
        if labels["inhibition"] != "exempt":
            assert labels["severity"] == "critical", "only a page may hold others back"

    notes = rule["annotations"]
    assert set(notes) == {"summary", "description", "runbook_url", "dashboard_url"}
    summary = notes["summary"]
    assert "{{" not in summary and summary.endswith("."), "a static sentence"

    description = notes["description"]
    placeholders = TEMPLATE.findall(description)
    assert placeholders, "the description is templated"
    named = []
    for placeholder in placeholders:
        m = LABEL_PLACEHOLDER.match(placeholder)
        # $labels only: the expected annotations are rendered without a Prometheus to ask.
        assert m, f"only {{{{ $labels.x }}}} in descriptions, got {placeholder}"
        named.append(m.group(1))
    subject = {"instance"} if name in HOST_LEVEL else SUBJECT_LABELS
    assert subject & set(named), f"the description names what is broken ({sorted(subject)})"
    assert description.endswith("."), "a sentence"
    assert description != summary

    assert notes["runbook_url"].startswith(PLACEHOLDER_BASES[_doc_of(name)] + "#")
    assert notes["dashboard_url"].startswith(PLACEHOLDER_GRAFANA + "/d/botwatch-")

    # Long enough not to flap, short enough to matter.
    assert "for" in rule, "every alert waits a little"
    assert MIN_FOR <= seconds(rule["for"]) <= MAX_FOR, rule["for"]

    for window in RANGE.findall(expr):
        assert seconds(window) >= MIN_WINDOW, f"[{window}] is under 4 scrape intervals"
    # Counters only through rate()/increase(): never alert on a counter's raw value.
    assert len(COUNTER.findall(expr)) == len(COUNTER_IN_RATE.findall(expr)), (
        "a counter outside rate()/increase()"
    )


def _doc_of(alert: str) -> str:
    return load_catalog().find(alert)[2].runbook.doc


def test_disk_alerts_predict_as_well_as_threshold() -> None:
    disk = [r for r in RULES if "botwatch_filesystem_avail_bytes" in r["expr"]]
    predicted = [r["alert"] for r in disk if "predict_linear(" in r["expr"]]
    thresholds = [r["alert"] for r in disk if "predict_linear(" not in r["expr"]]
    assert predicted, "no disk alert predicts the fill"
    assert thresholds, "no disk alert has a plain threshold"


def test_the_catalog_is_what_the_rule_files_hold() -> None:
    catalog = load_catalog()
    assert sorted(RULE_IDS) == sorted(r.alert for _, _, r in catalog.alerts())


# --- a promtool test per alert --------------------------------------------------------------
def _rule_tests() -> list[tuple[str, list[dict[str, Any]]]]:
    out = []
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for test in doc["tests"]:
            assert test["input_series"], f"{path.name}: {test.get('name')} has no input"
            for check in test.get("alert_rule_test", []):
                out.append((check["alertname"], check.get("exp_alerts") or []))
    return out


def test_every_alert_has_a_firing_and_a_silent_test() -> None:
    tests = _rule_tests()
    fires = {name for name, exp in tests if exp}
    silent = {name for name, exp in tests if not exp}
    by_name = {r["alert"]: r for r in RULES}
    assert sorted(set(by_name) - fires) == [], "alerts no test fires"
    assert sorted(set(by_name) - silent) == [], "alerts no test finds silent"
    assert sorted((fires | silent) - set(by_name)) == [], "tests of alerts that do not exist"
    for name, expected in tests:
        for alert in expected:
            rule = by_name[name]
            # Labels and annotations pinned, the links included (promtool compares them exactly).
            assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]
            assert alert["exp_labels"].get("component"), "every alert names its component"
            notes = alert["exp_annotations"]
            assert notes["runbook_url"] == rule["annotations"]["runbook_url"]
            assert notes["dashboard_url"] == rule["annotations"]["dashboard_url"]
            assert notes["summary"] == rule["annotations"]["summary"]
            assert "{{" not in notes["description"]


# --- runbook links and coverage -------------------------------------------------------------
@pytest.mark.parametrize("doc", GROUPS)
def test_every_link_points_at_a_heading_of_its_document(doc: str) -> None:
    found = headings(runbooks()[doc])
    anchors = {h.anchor for h in found}
    for _, _, rule in load_catalog().alerts():
        ref = rule.runbook
        if ref.doc != doc:
            continue
        same = [h for h in found if h.text == ref.section]
        assert len(same) > ref.occurrence, (
            f"{rule.alert}: {doc} has no heading {ref.section!r} (occurrence {ref.occurrence})"
        )
        # The catalog counts repeats by text, forges by slug: both must land on the heading.
        assert anchor(ref.section, ref.occurrence) == same[ref.occurrence].anchor
        assert anchor(ref.section, ref.occurrence) in anchors


def _parents(found: list[Heading]) -> dict[Heading, Heading | None]:
    """Each part's section: the nearest heading above it, of a higher level, not a part."""
    out: dict[Heading, Heading | None] = {}
    for i, h in enumerate(found):
        if h.text not in PARTS:
            continue
        out[h] = next(
            (p for p in reversed(found[:i]) if p.level < h.level and p.text not in PARTS), None
        )
    return out


@pytest.mark.parametrize("doc", GROUPS)
def test_every_actionable_section_has_an_alert(doc: str) -> None:
    found = headings(runbooks()[doc])
    excluded = NOT_ACTIONABLE[doc]
    assert sorted(set(excluded) - {h.text for h in found}) == [], "stale exclusions"
    linked = {
        (r.runbook.section, r.runbook.occurrence)
        for _, _, r in load_catalog().alerts()
        if r.runbook.doc == doc
    }
    assert not {s for s, _ in linked} & set(excluded), "an alert links to an excluded section"
    parents = _parents(found)
    uncovered = []
    for h in found:
        if h.text in excluded or (h.text, h.occurrence) in linked:
            continue
        parent = parents.get(h)
        if parent is not None and (parent.text, parent.occurrence) in linked:
            continue
        uncovered.append(h.text if not h.occurrence else f"{h.text} ({h.occurrence})")
    assert uncovered == [], f"{doc}: sections no alert links to"


def test_lint_runbooks_agrees() -> None:
    """lint-runbooks, by its own policy of what is actionable, finds no wrong link and no
    uncovered section (its warnings about the Trader Bot table of contents are the document's)."""
    report = lint(runbooks(), load_catalog())
    assert report.failures == 0, "\n".join(report.lines())
    for note in report.notes:
        m = re.search(r"(\d+) of (\d+) actionable sections covered", note)
        assert m and m.group(1) == m.group(2), note


def test_repeated_headings_are_told_apart() -> None:
    repeated = [h for h in headings(runbooks()["alphaengine"]) if h.text == "해결"]
    assert [h.anchor for h in repeated[:4]] == ["해결", "해결-1", "해결-2", "해결-3"]
    assert [h.occurrence for h in repeated[:4]] == [0, 1, 2, 3]
