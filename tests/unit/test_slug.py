"""Heading anchors: checked against the anchors the Trader Bot runbook's own authors wrote,
github-slugger's rules (Korean, punctuation, symbols, repeats) and the runbooks' structure."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter.runbooks.slug import Heading, Slugger, anchor, headings, inline_text, outline, slug

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runbooks"
TRADER_BOT = (FIXTURES / "trader-bot.md").read_text(encoding="utf-8")
ALPHAENGINE = (FIXTURES / "alphaengine.md").read_text(encoding="utf-8")
# `1. [빠른 진단](#빠른-진단)`: the table of contents, as the document's authors wrote it.
TOC_ENTRY = re.compile(r"^\d+\. \[([^\]]+)\]\(#([^)]+)\)$", re.MULTILINE)
# The authors' table of contents names three sections the document does not have.
TOC_MISSING = {"서비스별-문제-해결", "네트워크-문제", "데이터베이스-문제"}


def test_the_slugger_agrees_with_every_anchor_of_the_trader_bot_table_of_contents() -> None:
    toc = TOC_ENTRY.findall(TRADER_BOT)
    assert len(toc) == 6
    for text, written in toc:
        assert slug(text) == written
    present = {h.anchor for h in headings(TRADER_BOT)}
    assert {written for _, written in toc} - present == TOC_MISSING


def test_the_triage_table_links_land_on_the_scenario_headings() -> None:
    # `| API 응답 없음 | ... | [시나리오 1](#시나리오-1-api-서버가-시작되지-않음) |`
    table = re.findall(r"\[시나리오 \d+\]\(#([^)]+)\)", TRADER_BOT)
    assert len(table) == 5
    by_anchor = {h.anchor: h.text for h in headings(TRADER_BOT)}
    assert [by_anchor[a] for a in table] == [
        "시나리오 1: API 서버가 시작되지 않음",
        "시나리오 5: API 응답이 느림",
        "시나리오 3: Rate Limit 초과 (429 에러)",
        "시나리오 6: 거래소 연결 실패",
        "시나리오 8: WebSocket 연결이 자주 끊김",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The runbooks' own headings: Korean kept, `:` `(` `)` `/` `.` dropped.
        ("시나리오 3: Rate Limit 초과 (429 에러)", "시나리오-3-rate-limit-초과-429-에러"),
        ("시나리오 7: 인증 실패 (401 Unauthorized)", "시나리오-7-인증-실패-401-unauthorized"),
        ("1. Python/venv 문제", "1-pythonvenv-문제"),
        ("3. secrets.yaml 누락/오류", "3-secretsyaml-누락오류"),
        ("CPU 사용량 높음", "cpu-사용량-높음"),
        ("Web API 502 오류", "web-api-502-오류"),
        # github-slugger's own cases.
        ("heading with a - dash", "heading-with-a---dash"),
        ("heading with an _ underscore", "heading-with-an-_-underscore"),
        ("heading with a period.txt", "heading-with-a-periodtxt"),
        (
            "exchange.bind_headers(exchange, routing [, bindCallback])",
            "exchangebind_headersexchange-routing--bindcallback",
        ),
        ("apostrophe’s should be trimmed", "apostrophes-should-be-trimmed"),
        ("I ♥ unicode", "i--unicode"),
        ("en–dash", "endash"),
        ("😄 unicode emoji", "-unicode-emoji"),
        ("😄_😄 unicode emoji", "_-unicode-emoji"),
        (":smile: - a gemoji", "smile---a-gemoji"),
        ("Привет non-latin 你好", "привет-non-latin-你好"),
        ("🚨 긴급 복구 절차", "-긴급-복구-절차"),
        # Other numbers go (², ①); symbols that are also letters stay (Ⓐ).
        ("x² ① Ⓐ", "x--ⓐ"),
        ("$100 € 50% off!", "100--50-off"),
    ],
)
def test_slug_follows_github_slugger(text: str, expected: str) -> None:
    assert slug(text) == expected


def test_repeats_are_numbered_as_forges_do() -> None:
    unique = Slugger()
    got = [unique(t) for t in ["echo", "echo", "echo 1", "echo-1", "echo", "foxtrot-1", "foxtrot"]]
    assert got == ["echo", "echo-1", "echo-1-1", "echo-1-2", "echo-2", "foxtrot-1", "foxtrot"]
    assert unique("foxtrot") == "foxtrot-2"
    assert anchor("증상") == "증상"
    assert anchor("증상", 3) == "증상-3"


def test_the_alphaengine_runbook_repeats_its_part_headings() -> None:
    found = headings(ALPHAENGINE)
    assert [h.anchor for h in found if h.text == "증상"] == ["증상"] + [
        f"증상-{n}" for n in range(1, 9)
    ]
    assert [h.anchor for h in found if h.text == "해결"] == ["해결"] + [
        f"해결-{n}" for n in range(1, 8)
    ]
    assert Heading(4, "4. DB 잠금", "4-db-잠금") in found


def test_shell_comments_in_fenced_blocks_are_not_headings() -> None:
    trader = {h.text for h in headings(TRADER_BOT)}
    alpha = {h.text for h in headings(ALPHAENGINE)}
    # ```bash blocks at the top level ...
    assert "1. 모든 컨테이너 상태" not in trader
    assert "컨테이너 로그 확인" not in trader
    assert "상세 상태 확인" not in alpha
    # ... and fenced blocks indented inside list items (`   # 로그에서 Rate Limit 확인`).
    assert "로그에서 Rate Limit 확인" not in alpha
    assert "/etc/systemd/system/alphaengine-bot.service" not in alpha
    assert len(headings(TRADER_BOT)) == 27
    assert len(headings(ALPHAENGINE)) == 42
    # Line numbers, for the lint's messages.
    assert [(h.line, h.heading.level) for h in outline(TRADER_BOT)[:3]] == [(1, 1), (3, 2), (14, 2)]


def test_heading_syntax() -> None:
    doc = "\n".join(
        [
            "# Title #",  # closing sequence
            "##   Spaced   ##   ",
            "   ### Indented three",
            "    #### Indented four is code",
            "#hashtag is not a heading",
            "##### `code` and **bold** and [a link](https://x.test/) and __init__",
            "###### snake_case_name \\# escaped &amp; entity",
            "~~~",
            "# in a tilde fence",
            "```",  # does not close a ~~~ fence
            "~~~",
            "````md",
            "```",
            "# in a longer fence",
            "````",
            "``` not`a`fence: an inline code span",
            "<!-- # in a comment",
            "# still in it -->",
            "## Last",
            "#",  # empty heading
        ]
    )
    assert [(h.level, h.text, h.anchor) for h in headings(doc)] == [
        (1, "Title", "title"),
        (2, "Spaced", "spaced"),
        (3, "Indented three", "indented-three"),
        (5, "code and bold and a link and init", "code-and-bold-and-a-link-and-init"),
        (6, "snake_case_name # escaped & entity", "snake_case_name--escaped--entity"),
        (2, "Last", "last"),
        (1, "", ""),
    ]


def test_an_unclosed_fence_runs_to_the_end() -> None:
    assert headings("# One\n```bash\n# not a heading\n") == [Heading(1, "One", "one")]


@pytest.mark.parametrize(
    ("markdown", "text"),
    [
        ("`a` b", "a b"),
        ("`` a`b ``", "a`b"),
        ("*em* and _em_ and ***both***", "em and em and both"),
        ("~~gone~~ here", "gone here"),
        ("![alt text](img.png) [link](#x) [ref][r]", "alt text link ref"),
        ("<b>tag</b> <https://x.test/a>", "tag https://x.test/a"),
        ("a \\*not em\\* b", "a *not em* b"),
        ("`*kept*` *x*", "*kept* x"),
    ],
)
def test_inline_markup_is_reduced_to_its_text(markdown: str, text: str) -> None:
    assert inline_text(markdown) == text
