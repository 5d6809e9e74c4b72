"""dockerevents: the /events wire format, and counting each event once (pure, no engine).

The Docker shapes are from the Engine API documentation (`Action: "health_status: healthy"`,
container labels among the actor's attributes); the podman ones as podman 4.3 sent them here
(`Action: "health_status"` with a top-level `HealthStatus`, attributes without labels).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporter.collectors.dockerevents import (
    COUNTED,
    FORGET_AFTER,
    NS,
    OVERLAP_NS,
    Event,
    JsonLines,
    Ledger,
    MalformedEvent,
    ledger_families,
    parse_event,
)
from tests.streams import value

T0 = 1_795_000_000 * NS


def doc(action: str, name: str = "web", cid: str = "c1", t: int = T0, **attrs: str) -> Any:
    return {
        "status": action,
        "id": cid,
        "Type": "container",
        "Action": action,
        "Actor": {"ID": cid, "Attributes": {"name": name, "image": "img", **attrs}},
        "time": t // NS,
        "timeNano": t,
    }


def event(action: str, name: str = "web", cid: str = "c1", t: int = T0, **attrs: str) -> Event:
    parsed = parse_event(doc(action, name, cid, t, **attrs))
    assert parsed is not None
    return parsed


def test_docker_and_podman_shapes() -> None:
    docker_health = doc("health_status: unhealthy")
    assert event("die", exitCode="137").exit_code == 137
    parsed = parse_event(docker_health)
    assert parsed is not None and parsed.action == "health_status"
    podman_health = {**doc("health_status"), "HealthStatus": "healthy"}
    assert (parsed := parse_event(podman_health)) is not None and parsed.action == "health_status"
    exec_start = parse_event(doc("exec_start: sh -c test -e /tmp/ok"))
    assert exec_start is not None and exec_start.action == "exec_start"
    assert not exec_start.refreshes
    assert event("die").refreshes
    # Seconds only (old engines): still an event.
    old = doc("start")
    del old["timeNano"]
    assert (parsed := parse_event(old)) is not None and parsed.time_ns == T0
    # Other types are not container events.
    assert parse_event({"Type": "image", "Action": "tag", "Actor": {"ID": "i"}}) is None
    assert parse_event({**doc("refresh"), "Type": "system"}) is None


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (["a list"], "not an object"),
        ({"Type": "container", "Action": "die"}, "without Action or ID"),
        ({"Type": "container", "Actor": {"ID": "c1"}}, "without Action or ID"),
        ({"Type": "container", "Action": "die", "Actor": {"ID": "c1"}}, "without time"),
    ],
)
def test_malformed_events(bad: Any, why: str) -> None:
    with pytest.raises(MalformedEvent, match=why):
        parse_event(bad)


def test_a_die_without_a_usable_exit_code_is_still_a_die() -> None:
    assert event("die", exitCode="x").exit_code is None


def test_json_lines_across_chunks_and_garbage() -> None:
    lines = JsonLines()
    one = json.dumps(doc("start")).encode()
    assert lines.feed(one[:10]) == ([], [])
    docs, errors = lines.feed(one[10:] + b"\n\nnot json\n" + one + b"\n")
    assert docs == [doc("start"), doc("start")]
    assert len(errors) == 1 and errors[0].startswith("not JSON")
    # Korean in a name, split inside a character.
    korean = json.dumps(doc("start", name="봇"), ensure_ascii=False).encode() + b"\n"
    cut = korean.index("봇".encode()) + 1
    assert lines.feed(korean[:cut]) == ([], [])
    assert lines.feed(korean[cut:])[0][0]["Actor"]["Attributes"]["name"] == "봇"


def test_a_line_that_never_ends_is_given_up() -> None:
    lines = JsonLines()
    _, errors = lines.feed(b"x" * (JsonLines.MAX_LINE + 1))
    assert len(errors) == 1 and "over" in errors[0]
    assert lines.feed(json.dumps(doc("start")).encode() + b"\n") == ([doc("start")], [])


def test_counting_starts_at_zero_and_counts_each_event_once() -> None:
    ledger = Ledger(horizon_ns=T0)
    ledger.present(["web"], 0.0)
    fams = ledger_families(ledger)
    for action in COUNTED:
        assert value(fams, "botwatch_container_events_total", container="web", event=action) == 0
    assert value(fams, "botwatch_container_oom_kills_total", container="web") == 0

    die = event("die", t=T0 + 1, exitCode="3")
    assert ledger.count(die)
    assert not ledger.count(die)  # the same event again (a reopened stream repeats it)
    assert ledger.count(event("die", t=T0 + 2, exitCode="300"))
    assert ledger.count(event("exec_die", t=T0 + 3))  # seen, but not one of COUNTED
    fams = ledger_families(ledger)
    assert value(fams, "botwatch_container_events_total", container="web", event="die") == 2
    assert value(fams, "botwatch_container_exits_total", container="web", exit_code="3") == 1
    assert value(fams, "botwatch_container_exits_total", container="web", exit_code="other") == 1
    assert value(fams, "botwatch_container_events_total", event="exec_die") is None


def test_reopening_replays_the_overlap_and_nothing_is_counted_twice() -> None:
    ledger = Ledger(horizon_ns=T0)
    stream = [event("start", t=T0 + i * NS // 2) for i in range(20)]  # one every 0.5 s
    for e in stream[:15]:
        ledger.count(e)
    since = ledger.since_ns()
    assert since == stream[14].time_ns - OVERLAP_NS
    replayed = [e for e in stream if e.time_ns >= since]
    counted = [e for e in replayed if ledger.count(e)]
    assert counted == stream[15:]
    assert ledger.events["web"]["start"] == 20


def test_an_event_slightly_out_of_order_is_counted() -> None:
    ledger = Ledger(horizon_ns=T0)
    assert ledger.count(event("start", t=T0 + 10 * NS))
    assert ledger.count(event("die", t=T0 + 9 * NS))  # within the overlap: a new event
    assert not ledger.count(event("kill", t=T0 + 10 * NS - OVERLAP_NS - 1))  # before it


def test_oom_from_the_event_then_the_inspect_is_one_kill() -> None:
    ledger = Ledger(horizon_ns=T0)
    started, oom, finished = T0 + 1 * NS, T0 + 5 * NS, T0 + 5 * NS + 1000
    assert ledger.count(event("oom", t=oom))
    assert not ledger.infer_oom("web", started, finished)
    assert ledger.ooms["web"] == 1


def test_oom_seen_first_in_an_inspect_then_the_late_event_is_one_kill() -> None:
    ledger = Ledger(horizon_ns=T0)
    started, oom, finished = T0 + 1 * NS, T0 + 5 * NS, T0 + 5 * NS + 1000
    assert ledger.infer_oom("web", started, finished)
    assert not ledger.infer_oom("web", started, finished)  # the next poll sees it again
    assert ledger.count(event("oom", t=oom))  # an event, counted as such...
    assert ledger.events["web"]["oom"] == 1
    assert ledger.ooms["web"] == 1  # ...but not a second kill


def test_each_run_killed_is_one_kill_and_old_ones_are_not_counted() -> None:
    ledger = Ledger(horizon_ns=T0)
    assert not ledger.infer_oom("web", T0 - 10 * NS, T0 - NS)  # before counting began
    assert ledger.infer_oom("web", T0 + NS, T0 + 2 * NS)
    assert ledger.infer_oom("web", T0 + 3 * NS, T0 + 4 * NS)  # the next run, killed too
    assert ledger.count(event("oom", t=T0 + 6 * NS))  # and the one after, announced
    assert ledger.ooms["web"] == 3
    assert not ledger.infer_oom("web", T0 + 5 * NS, None)  # running: no end yet


def test_names_gone_for_long_are_forgotten() -> None:
    ledger = Ledger(horizon_ns=T0)
    ledger.present(["web", "oneoff"], 1000.0)
    ledger.count(event("die", name="oneoff", t=T0 + 1))
    assert not ledger.present(["web"], 1000.0 + FORGET_AFTER)
    assert "oneoff" in ledger.events
    assert ledger.present(["web"], 1000.0 + FORGET_AFTER + 1)
    assert "oneoff" not in ledger.events and "oneoff" not in ledger.exits


def test_json_round_trip_and_unusable_documents() -> None:
    ledger = Ledger(horizon_ns=T0)
    ledger.present(["web"], 5.0)
    ledger.count(event("oom", t=T0 + 1))
    ledger.count(event("die", t=T0 + 2, exitCode="137"))
    ledger.infer_oom("db", T0 + 3, T0 + 4)
    ledger.malformed = 2
    saved = json.loads(json.dumps(ledger.to_json()))
    assert Ledger.from_json(saved) == ledger
    # What it keeps is a copy: the checkpoint thread never sees the loop's dicts change.
    copy = ledger.to_json()
    ledger.count(event("die", t=T0 + 5))
    assert copy["events"]["web"]["die"] == 1
    for broken in ({}, {**saved, "events": []}, {**saved, "ooms": {"web": "x"}}):
        with pytest.raises((KeyError, TypeError, ValueError, AttributeError)):
            Ledger.from_json(broken)
