"""`make demo`'s runbook pages: every alert's link opens an existing heading."""

from __future__ import annotations

import re
import urllib.parse
import urllib.request

from exporter.runbooks.catalog import load_catalog, runbook_url
from tests.e2e.demo import RunbookServer


def test_every_alert_link_opens_its_heading() -> None:
    server = RunbookServer()
    try:
        bases = server.bases()
        pages: dict[str, set[str]] = {}
        for path in {urllib.parse.urlsplit(b).path for b in bases.values()}:
            with urllib.request.urlopen(f"{server.base}{path}", timeout=10) as response:
                page = response.read().decode()
            pages[path] = set(re.findall(r"<h\d id='([^']*)'>", page))
        for _, _, rule in load_catalog().alerts():
            link = urllib.parse.urlsplit(runbook_url(rule.runbook, bases))
            assert link.netloc == server.base.removeprefix("http://")
            assert link.fragment in pages[link.path], rule.alert
    finally:
        server.close()
