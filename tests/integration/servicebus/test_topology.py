"""The topology file: the official emulator's format, the shipped default, errors that name the field."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from devstack.servicebus.topology import DEFAULT_TOPOLOGY, TopologyError, load_topology, parse_duration, parse_topology


def doc(queues=None, topics=None, namespaces=None) -> dict:
    ns = {"Name": "sbemulatorns", "Queues": queues or [], "Topics": topics or []}
    return {"UserConfig": {"Namespaces": namespaces if namespaces is not None else [ns], "Logging": {"Type": "File"}}}


def test_shipped_topology_has_the_engine_queues():
    topology = load_topology(DEFAULT_TOPOLOGY)
    queues = {q.name: q for q in topology.queues}
    assert set(queues) == {"changes", "fno-events", "sync-pages"}
    changes = queues["changes"]
    assert changes.requires_session and changes.requires_duplicate_detection
    assert (changes.max_delivery_count, changes.lock_duration, changes.duplicate_window) == (10, 60.0, 600.0)
    for name in ("fno-events", "sync-pages"):
        assert not queues[name].requires_session
        assert (queues[name].max_delivery_count, queues[name].lock_duration) == (10, 60.0)
    # A page job is sent again when the page before it is redelivered, and the next map's first page by
    # whichever page finishes a map last: duplicate detection makes each one job.
    pages = queues["sync-pages"]
    assert pages.requires_duplicate_detection and pages.duplicate_window == 600.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT1M", 60), ("PT10M", 600), ("P1D", 86400), ("PT0.5S", 0.5), ("P1DT2H3M4S", 93784), ("PT1H", 3600)],
)
def test_iso_durations(text, seconds):
    assert parse_duration(text, "x") == seconds


@pytest.mark.parametrize("text", ["1M", "PT", "P", "PT1X", 60, None, "PT1M "])
def test_bad_durations_name_the_field(text):
    with pytest.raises(TopologyError, match=r"Queues\[0\]\.Properties\.LockDuration"):
        parse_topology(doc([{"Name": "q", "Properties": {"LockDuration": text}}]))


def test_never_expiring_ttl_is_none():
    topology = parse_topology(
        doc([{"Name": "q", "Properties": {"DefaultMessageTimeToLive": "P10675199DT2H48M5.4775807S"}}])
    )
    assert topology.queues[0].default_ttl is None


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"MaxDeliveryCount": 0}, "MaxDeliveryCount"),
        ({"MaxDeliveryCount": "10"}, "MaxDeliveryCount"),
        ({"RequiresSession": "true"}, "RequiresSession"),
        ({"LockDuraton": "PT1M"}, "LockDuraton"),
    ],
)
def test_bad_queue_properties_name_the_field(props, field):
    with pytest.raises(TopologyError, match=rf"Queues\[0\]\.Properties\.{field}"):
        parse_topology(doc([{"Name": "q", "Properties": props}]))


def test_structure_errors():
    with pytest.raises(TopologyError, match="UserConfig"):
        parse_topology({"Namespaces": []})
    with pytest.raises(TopologyError, match="exactly one namespace"):
        parse_topology(doc(namespaces=[]))
    with pytest.raises(TopologyError, match=r"Queues\[1\]\.Name"):
        parse_topology(doc([{"Name": "a"}, {"Name": ""}]))
    with pytest.raises(TopologyError, match="declared twice"):
        parse_topology(doc([{"Name": "Orders"}, {"Name": "orders"}]))


def test_topics_and_subscriptions_are_accepted():
    topology = parse_topology(
        doc(
            [{"Name": "q"}],
            [
                {
                    "Name": "events",
                    "Properties": {"DefaultMessageTimeToLive": "PT1H"},
                    "Subscriptions": [
                        {"Name": "audit", "Properties": {"MaxDeliveryCount": 3}, "Rules": [{"Name": "all"}]}
                    ],
                }
            ],
        )
    )
    assert [t.name for t in topology.topics] == ["events"]
    assert [s.name for s in topology.topics[0].subscriptions] == ["audit"]


def test_the_emulator_refuses_to_start_on_a_bad_file_and_says_why(tmp_path):
    bad = tmp_path / "topology.json"
    bad.write_text(json.dumps(doc([{"Name": "q", "Properties": {"MaxDeliveryCount": -1}}])))
    result = subprocess.run(
        [sys.executable, "-m", "devstack.servicebus", "--port", "0", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Queues[0].Properties.MaxDeliveryCount" in result.stderr
