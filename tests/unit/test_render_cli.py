"""`botwatch-exporter render` through the real CLI, the links it derives at run time
(botwatch_alert_runbook_info, the landing page's rows) and the `runbooks:` config block."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.cli import rendered_files
from exporter.kuberule import prometheus_rule
from exporter.render import TEXT, assemble
from exporter.runbooks.catalog import (
    PLACEHOLDER_BASES,
    PLACEHOLDER_GRAFANA,
    dashboard_url,
    load_catalog,
    render_rules,
    runbook_url,
)
from exporter.runbooks.dashboards import render_dashboards
from exporter.runbooks.info import MapRow, runbook_info, runbook_map
from exporter.store import Store
from tests.support import promtool_lint, run_cli

BASE = "https://git.example.com/ops/runbooks/-/blob/main/trader-bot.md"
GRAFANA = "https://grafana.ops.example.com/"


def fresh() -> dict[str, str]:
    return rendered_files(dict(PLACEHOLDER_BASES), PLACEHOLDER_GRAFANA)


def rules_in(text: str) -> list[dict[str, object]]:
    return [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


# render ---------------------------------------------------------------------------------------


def test_rendered_files_are_the_rule_files_the_dashboards_and_the_prometheusrule() -> None:
    catalog = load_catalog()
    files = fresh()
    rules = {f"alerts/{n}": t for n, t in render_rules(catalog).items()}
    boards = {f"grafana/dashboards/{n}": t for n, t in render_dashboards(catalog).items()}
    kube = {"deploy/kubernetes/prometheusrule.yaml": prometheus_rule(render_rules(catalog))}
    assert files == rules | boards | kube
    assert set(rules) == {
        "alerts/trader-bot.rules.yml",
        "alerts/alphaengine.rules.yml",
        "alerts/botwatch.rules.yml",
    }


def test_render_writes_the_placeholder_files_that_promtool_accepts(tmp_path: Path) -> None:
    result = run_cli("render", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    files = fresh()
    for name, text in files.items():
        assert (tmp_path / name).read_text(encoding="utf-8") == text
        assert f"wrote {tmp_path / name}" in result.stdout
    rule_files = sorted(str(p) for p in (tmp_path / "alerts").glob("*.rules.yml"))
    check = subprocess.run(
        ["promtool", "check", "rules", *rule_files], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_runbook_bases_and_grafana_url_are_set_at_render_time(tmp_path: Path) -> None:
    result = run_cli(
        "render",
        f"--runbook-base=trader-bot={BASE}",
        f"--grafana-url={GRAFANA}",
        f"--out={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    catalog = load_catalog()
    for group in catalog.groups:
        rendered = rules_in((tmp_path / "alerts" / f"{group.name}.rules.yml").read_text())
        for index, (rule, entry) in enumerate(zip(group.rules, rendered, strict=True)):
            annotations = entry["annotations"]
            assert isinstance(annotations, dict)
            bases = {**PLACEHOLDER_BASES, "trader-bot": BASE}
            assert annotations["runbook_url"] == runbook_url(rule.runbook, bases)
            assert annotations["dashboard_url"] == dashboard_url(group, index, GRAFANA)
            if rule.runbook.doc == "trader-bot":
                assert annotations["runbook_url"].startswith(BASE + "#")
    assert any(r.runbook.doc == "trader-bot" for _, _, r in catalog.alerts())


def test_check_reports_missing_changed_and_stale_files(tmp_path: Path) -> None:
    missing = run_cli("render", "--check", f"--out={tmp_path}")
    assert missing.returncode == 1
    assert "alerts/botwatch.rules.yml: missing (a fresh render writes it)" in missing.stdout
    assert not (tmp_path / "alerts").exists()  # --check writes nothing

    assert run_cli("render", f"--out={tmp_path}").returncode == 0
    clean = run_cli("render", "--check", f"--out={tmp_path}")
    assert (clean.returncode, clean.stdout) == (
        0,
        f"render --check: {len(fresh())} files up to date\n",
    )

    (tmp_path / "alerts" / "botwatch.rules.yml").write_text("groups: []\n")
    (tmp_path / "alerts" / "old.rules.yml").write_text("groups: []\n")
    dirty = run_cli("render", "--check", f"--out={tmp_path}")
    assert dirty.returncode == 1
    assert dirty.stdout.splitlines() == [
        "alerts/botwatch.rules.yml: differs from a fresh render",
        "alerts/old.rules.yml: stale (a fresh render does not write it)",
        "render --check: run `botwatch-exporter render` and commit the result",
    ]
    rewrite = run_cli("render", f"--out={tmp_path}")
    assert f"stale: {tmp_path / 'alerts/old.rules.yml'} is not written" in rewrite.stdout


def test_the_committed_files_equal_a_fresh_render() -> None:
    result = run_cli("render", "--check")  # from the repository root, like `make render`
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--runbook-base=trader-bot"], "--runbook-base trader-bot: expected DOC=VALUE"),
        (
            ["--runbook-base=trader=https://x.test/a.md"],
            "--runbook-base trader=https://x.test/a.md: unknown runbook 'trader' (known: "
            "trader-bot, alphaengine, botwatch)",
        ),
        (
            ["--runbook-base=alphaengine=https://x.test/a.md#top"],
            "--runbook-base alphaengine=https://x.test/a.md#top: must not contain '#' (the "
            "section's anchor is appended to it)",
        ),
        (
            ["--runbook-base=botwatch=docs/botwatch-runbook.md"],
            "--runbook-base botwatch=docs/botwatch-runbook.md: must be an absolute http:// or "
            "https:// URL",
        ),
        (
            ["--grafana-url=grafana:3000"],
            "--grafana-url grafana:3000: must be an absolute http:// or https:// URL",
        ),
    ],
)
def test_render_usage_errors_are_one_line(args: list[str], error: str, tmp_path: Path) -> None:
    result = run_cli("render", f"--out={tmp_path}", *args)
    assert (result.returncode, result.stderr, result.stdout) == (2, error + "\n", "")
    assert list(tmp_path.iterdir()) == []


# What the daemon derives at run time ---------------------------------------------------------


def test_info_metric_has_one_sample_per_alert() -> None:
    catalog = load_catalog()
    bases = {**PLACEHOLDER_BASES, "trader-bot": BASE}
    family = runbook_info(catalog, bases)
    assert family.name == "botwatch_alert_runbook_info"
    assert [(s.labels, s.value) for s in family.samples] == [
        (
            {
                "alertname": rule.alert,
                "runbook": rule.runbook.doc,
                "section": rule.runbook.section,
                "runbook_url": runbook_url(rule.runbook, bases),
            },
            1,
        )
        for _, _, rule in catalog.alerts()
    ]


def test_store_serves_the_info_metric_with_the_configured_links() -> None:
    store = Store()
    before = store.version
    store.set_runbooks({**PLACEHOLDER_BASES, "trader-bot": BASE}, GRAFANA)
    assert store.version == before + 1
    store.set_runbooks({**PLACEHOLDER_BASES, "trader-bot": BASE}, GRAFANA)
    assert store.version == before + 1  # unchanged links leave the cached body valid
    body = assemble(TEXT, store.chunks(), store.own_families()).decode()
    assert promtool_lint(body) == ""
    samples = [
        s
        for f in text_string_to_metric_families(body)
        if f.name == "botwatch_alert_runbook_info"
        for s in f.samples
    ]
    assert len(samples) == len(load_catalog().alerts())
    trader = [s for s in samples if s.labels["runbook"] == "trader-bot"]
    assert trader
    assert all(s.labels["runbook_url"].startswith(BASE + "#") for s in trader)


def test_map_rows_say_which_metrics_are_served() -> None:
    catalog = load_catalog()
    first = catalog.alerts()[0][2]
    served = frozenset(first.metrics()[:1])
    rows = runbook_map(catalog, PLACEHOLDER_BASES, GRAFANA, served)
    assert [r.alert for r in rows] == [r.alert for _, _, r in catalog.alerts()]
    assert rows[0].metrics[0] == (first.metrics()[0], True)
    assert rows[0].dashboard_url.startswith("https://grafana.ops.example.com/d/botwatch-")

    def row(metrics: tuple[tuple[str, bool], ...]) -> MapRow:
        return MapRow("s", "A", "info", "botwatch", "x", "u", "d", metrics)

    assert row((("a", True), ("b", True))).coverage == "live"
    assert row((("a", True), ("b", False))).coverage == "partial"
    assert row((("a", False),)).coverage == "none"
    assert row(()).coverage == "external"  # reads Prometheus' own `up`


# The runbooks: config block ----------------------------------------------------------------


def check_config(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "botwatch.yml"
    path.write_text(text, encoding="utf-8")
    result = run_cli("check-config", str(path))
    return result.returncode, (result.stdout + result.stderr).replace(str(path), "FILE")


def test_runbooks_config_accepts_bases_and_a_grafana_url(tmp_path: Path) -> None:
    code, out = check_config(
        tmp_path,
        f"runbooks:\n  bases:\n    trader-bot: {BASE}\n  grafana_url: {GRAFANA}\n",
    )
    assert code == 0, out


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "runbooks:\n  bases:\n    traderbot: https://x.test/a.md\n",
            "FILE: runbooks.bases.traderbot: unknown runbook (known: trader-bot, alphaengine, "
            "botwatch) (got 'https://x.test/a.md')",
        ),
        (
            "runbooks:\n  bases:\n    alphaengine: https://x.test/a.md#x\n",
            "FILE: runbooks.bases.alphaengine: must not contain '#' (the section's anchor is "
            "appended to it) (got 'https://x.test/a.md#x')",
        ),
        (
            "runbooks:\n  grafana_url: localhost:3000\n",
            "FILE: runbooks.grafana_url: must be an absolute http:// or https:// URL "
            "(got 'localhost:3000')",
        ),
        (
            "runbooks:\n  base: {}\n",
            "FILE: runbooks.base: unknown key (did you mean 'bases'?)",
        ),
    ],
)
def test_runbooks_config_errors_are_one_line(tmp_path: Path, text: str, error: str) -> None:
    assert check_config(tmp_path, text) == (2, error + "\n")
