"""lint-runbooks: the catalog against the operators' runbooks (copies in tests/fixtures/runbooks,
checked against ../shared/seeds when that exists), pure and through the real CLI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from exporter.runbooks.catalog import Catalog, load_catalog
from exporter.runbooks.lint import POLICIES, Finding, actionable, links, lint, lint_document
from exporter.runbooks.slug import outline
from tests.support import REPO, run_cli

FIXTURES = REPO / "tests" / "fixtures" / "runbooks"
TRADER_BOT = (FIXTURES / "trader-bot.md").read_text(encoding="utf-8")
ALPHAENGINE = (FIXTURES / "alphaengine.md").read_text(encoding="utf-8")
BOTWATCH_RUNBOOK = REPO / "docs" / "botwatch-runbook.md"
DOCS = {"trader-bot": TRADER_BOT, "alphaengine": ALPHAENGINE}
BROKEN_TOC = [
    'trader-bot: warning: line 7: link "서비스별 문제 해결" points at a heading that does not '
    "exist (#서비스별-문제-해결)",
    'trader-bot: warning: line 9: link "네트워크 문제" points at a heading that does not exist '
    "(#네트워크-문제)",
    'trader-bot: warning: line 10: link "데이터베이스 문제" points at a heading that does not '
    "exist (#데이터베이스-문제)",
]
FAILURE = re.compile(r"^(trader-bot|alphaengine|botwatch): alert [A-Z]\w* .*\(#[^)\s]+.*$")


def catalog(*rules: tuple[str, str, str, int]) -> Catalog:
    """A catalog of (alert, doc, section, occurrence), all in one group."""
    entries: list[dict[str, Any]] = [
        {
            "alert": alert,
            "expr": "botwatch_up == 0",
            "severity": "warning",
            "summary": "Something broke.",
            "description": "It broke.",
            "runbook": {"doc": doc, "section": section, "occurrence": occurrence},
        }
        for alert, doc, section, occurrence in rules
    ]
    return Catalog.model_validate({"groups": [{"name": "t", "stack": "t", "rules": entries}]})


def failures(findings: list[Finding]) -> list[str]:
    return [str(f) for f in findings if f.failure]


# The documents ------------------------------------------------------------------------------


def test_actionable_sections_of_the_trader_bot_runbook() -> None:
    found = outline(TRADER_BOT)
    assert [found[i].heading.text for i in actionable(found, POLICIES["trader-bot"])] == [
        *(h.heading.text for h in found if h.heading.text.startswith("시나리오 ")),
        "CPU 사용량 높음",
        "메모리 누수 의심",
        "네트워크 지연",
        "전체 서비스 복구",
        "롤백",
    ]
    assert len([h for h in found if h.heading.text.startswith("시나리오 ")]) == 12


def test_actionable_sections_of_the_alphaengine_runbook() -> None:
    found = outline(ALPHAENGINE)
    # `## 서비스 시작 실패` is covered through its four causes; 증상/진단/해결 are parts.
    assert [found[i].heading.text for i in actionable(found, POLICIES["alphaengine"])] == [
        "1. Python/venv 문제",
        "2. 권한 문제",
        "3. secrets.yaml 누락/오류",
        "4. DB 잠금",
        "WebSocket 연결 실패",
        "API 키 오류",
        "Rate Limit 초과",
        "DB 손상",
        "메모리 부족",
        "연결 끊김 반복",
        "Web API 502 오류",
        "주문 중복",
    ]


def test_in_document_links() -> None:
    doc = "\n".join(
        [
            "# A b",
            "[ok](#a-b) [broken](#nowhere) [top](#) [other file](x.md#a-b)",
            '[escaped](#%EB%AA%A9%EC%B0%A8 "title") `[in code](#code-span)`',
            "[ref]: #a-bc",
            '<a href="#html">x</a>',
            "```",
            "[in a fence](#fenced)",
            "```",
        ]
    )
    assert [(link.line, link.text, link.anchor) for link in links(doc)] == [
        (2, "ok", "a-b"),
        (2, "broken", "nowhere"),
        (3, "escaped", "목차"),
        (4, "ref", "a-bc"),
        (5, "", "html"),
    ]


# The packaged catalog against the real runbooks -----------------------------------------------


def test_every_alert_of_the_catalog_resolves_in_its_runbook() -> None:
    documents = dict(DOCS)
    botwatch_alerts = [
        r.alert for _, _, r in load_catalog().alerts() if r.runbook.doc == "botwatch"
    ]
    if BOTWATCH_RUNBOOK.exists():
        documents["botwatch"] = BOTWATCH_RUNBOOK.read_text(encoding="utf-8")
    else:
        assert botwatch_alerts == [], "alerts point at docs/botwatch-runbook.md, which is missing"
    report = lint(documents, load_catalog())
    assert failures(report.findings) == []


def test_the_three_broken_table_of_contents_entries_are_reported() -> None:
    report = lint(DOCS, load_catalog())
    assert [str(f) for f in report.findings if " link " in f.message] == BROKEN_TOC
    assert not any(f.failure for f in report.findings)


# Findings, on a catalog made for each case ---------------------------------------------------


def test_an_alert_at_a_missing_heading_fails() -> None:
    result = lint_document(
        "trader-bot",
        TRADER_BOT,
        catalog(("DbDown", "trader-bot", "시나리오 13: 데이터베이스 문제", 0)),
        POLICIES["trader-bot"],
    )
    assert failures(result.findings) == [
        'trader-bot: alert DbDown points at a heading that does not exist: "시나리오 13: '
        '데이터베이스 문제" (#시나리오-13-데이터베이스-문제)'
    ]


def test_an_alert_at_a_missing_occurrence_fails_and_a_present_one_covers() -> None:
    cat = catalog(
        ("SymptomNine", "alphaengine", "증상", 9),
        ("DuplicateOrders", "alphaengine", "증상", 8),
    )
    result = lint_document("alphaengine", ALPHAENGINE, cat, POLICIES["alphaengine"])
    assert failures(result.findings) == [
        'alphaengine: alert SymptomNine points at a heading that does not exist: "증상" '
        "occurrence 9 (#증상-9); the document has 9 (occurrence 0 to 8)"
    ]
    # 증상-8 is inside `## 주문 중복`, so that section is covered.
    uncovered = [f.message for f in result.findings if f.message.startswith("no alert covers")]
    assert not any("주문 중복" in m for m in uncovered)
    assert (result.sections, result.covered) == (12, 1)


def test_a_section_written_differently_from_its_heading_fails() -> None:
    cat = catalog(("ApiDown", "trader-bot", "시나리오 1 API 서버가 시작되지 않음", 0))
    result = lint_document("trader-bot", TRADER_BOT, cat, POLICIES["trader-bot"])
    assert failures(result.findings) == [
        'trader-bot: alert ApiDown names its section "시나리오 1 API 서버가 시작되지 않음", but '
        'the document writes it "시나리오 1: API 서버가 시작되지 않음" '
        "(#시나리오-1-api-서버가-시작되지-않음, line 49)"
    ]


def test_an_occurrence_whose_anchor_another_heading_took_fails() -> None:
    doc = "# a\n\n## a 1\n\n## a\n"  # anchors: a, a-1, a-2
    cat = catalog(("Second", "botwatch", "a", 1))
    result = lint_document("botwatch", doc, cat, POLICIES["botwatch"])
    assert failures(result.findings) == [
        'botwatch: alert Second links to #a-1, but "a" occurrence 1 (line 5) is #a-2'
    ]


def test_coverage_flows_up_from_a_cause_but_not_down_from_its_failure() -> None:
    cat = catalog(
        ("VenvBroken", "alphaengine", "1. Python/venv 문제", 0),
        ("StartFailed", "alphaengine", "서비스 시작 실패", 0),
    )
    result = lint_document("alphaengine", ALPHAENGINE, cat, POLICIES["alphaengine"])
    uncovered = [f.message for f in result.findings]
    assert not any("Python/venv" in m for m in uncovered)
    # Pointing at the failure does not cover its causes: each needs its own alert.
    assert any('"2. 권한 문제"' in m for m in uncovered)
    assert not any('"서비스 시작 실패"' in m for m in uncovered)
    assert failures(result.findings) == []


def test_strict_turns_warnings_into_failures() -> None:
    report = lint({"trader-bot": TRADER_BOT}, catalog(), strict=True)
    assert report.failures == len(report.findings) == 3 + 17
    assert str(report.findings[0]) == BROKEN_TOC[0].replace("warning: ", "")


def test_documents_not_given_are_skipped_with_a_note() -> None:
    cat = catalog(("A", "alphaengine", "주문 중복", 0), ("B", "alphaengine", "DB 손상", 0))
    report = lint({"trader-bot": TRADER_BOT}, cat)
    assert report.lines()[-4:] == [
        "trader-bot: 0 alerts checked; 0 of 17 actionable sections covered",
        "alphaengine: not checked (no --runbook alphaengine=PATH); 2 alerts point at it",
        "botwatch: not checked (no --runbook botwatch=PATH); 0 alerts point at it",
        "lint-runbooks: 0 problems, 20 warnings",
    ]


# The CLI ------------------------------------------------------------------------------------


def fixture_args() -> list[str]:
    return [
        f"--runbook=trader-bot={FIXTURES / 'trader-bot.md'}",
        f"--runbook=alphaengine={FIXTURES / 'alphaengine.md'}",
    ]


def test_cli_passes_on_the_runbooks_and_reports_the_broken_links() -> None:
    result = run_cli("lint-runbooks", *fixture_args())
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if " link " in line] == BROKEN_TOC
    assert lines[-1].startswith("lint-runbooks: 0 problems, ")
    assert "botwatch: not checked (no --runbook botwatch=PATH); " in result.stdout
    assert result.stderr == ""


def test_cli_strict_fails_on_warnings() -> None:
    result = run_cli("lint-runbooks", "--strict", *fixture_args())
    assert result.returncode == 1
    assert "trader-bot: line 7: link " in result.stdout


def test_cli_fails_with_one_line_per_alert_whose_heading_is_missing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.md"
    empty.write_text("# Nothing here\n\n## Not a scenario\n", encoding="utf-8")
    result = run_cli("lint-runbooks", f"--runbook=trader-bot={empty}")
    expected = [r.alert for _, _, r in load_catalog().alerts() if r.runbook.doc == "trader-bot"]
    assert expected, "the catalog has trader-bot alerts"
    problems = [
        line for line in result.stdout.splitlines() if line.startswith("trader-bot: alert ")
    ]
    assert result.returncode == 1
    assert [p.split()[2] for p in problems] == expected
    assert all(
        FAILURE.match(p) and "points at a heading that does not exist" in p for p in problems
    )
    assert result.stdout.splitlines()[-1] == (
        f"lint-runbooks: {len(expected)} problem{'s' * (len(expected) != 1)}, 0 warnings"
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--runbook=trader-bot"], "--runbook trader-bot: expected DOC=VALUE"),
        (
            ["--runbook=traderbot=x.md"],
            "--runbook traderbot=x.md: unknown runbook 'traderbot' (known: trader-bot, "
            "alphaengine, botwatch)",
        ),
        (
            ["--runbook=alphaengine=/nonexistent/a.md"],
            "--runbook alphaengine=/nonexistent/a.md: No such file or directory",
        ),
        (
            ["--runbook=trader-bot=a.md", "--runbook=trader-bot=b.md"],
            "--runbook trader-bot=b.md: trader-bot is given twice",
        ),
    ],
)
def test_cli_usage_errors_are_one_line(args: list[str], error: str) -> None:
    result = run_cli("lint-runbooks", *args)
    assert (result.returncode, result.stderr, result.stdout) == (2, error + "\n", "")
