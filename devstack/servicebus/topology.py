"""The emulator's entities, read from a topology file in the official Service Bus emulator's JSON format.

The same file configures Microsoft's Docker emulator, so a user with Docker can swap it in unchanged.
Unknown property names are errors (a typo must not silently become a default); errors name the file
and the JSON path of the bad field.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TOPOLOGY = Path(__file__).with_name("topology.json")

# TimeSpan.MaxValue as the official tools write it: "never expires".
_FOREVER_SECONDS = 10675199 * 86400.0

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


class TopologyError(ValueError):
    """The topology file is unreadable or a field in it is invalid; the message names the field."""


@dataclass(frozen=True)
class QueueSettings:
    name: str
    max_delivery_count: int = 10
    lock_duration: float = 60.0
    requires_session: bool = False
    default_ttl: float | None = None  # seconds; None = never expires
    dead_lettering_on_expiration: bool = False
    requires_duplicate_detection: bool = False
    duplicate_window: float = 600.0


@dataclass(frozen=True)
class SubscriptionSettings:
    name: str
    properties: dict[str, Any] = field(default_factory=dict)
    rules: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TopicSettings:
    name: str
    properties: dict[str, Any] = field(default_factory=dict)
    subscriptions: list[SubscriptionSettings] = field(default_factory=list)


@dataclass(frozen=True)
class Topology:
    namespace: str
    queues: list[QueueSettings]
    topics: list[TopicSettings] = field(default_factory=list)

    @property
    def queue_names(self) -> list[str]:
        return [q.name for q in self.queues]


def parse_duration(text: Any, where: str) -> float:
    """ISO 8601 duration (`PT1M`, `P1D`, `PT0.5S`) as seconds."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match or text in ("P", "PT") or text.endswith("T"):
        raise TopologyError(f"{where}: expected an ISO 8601 duration such as 'PT1M', got {text!r}")
    parts = {k: float(v) for k, v in match.groupdict(default="0").items()}
    return parts["days"] * 86400 + parts["hours"] * 3600 + parts["minutes"] * 60 + parts["seconds"]


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise TopologyError(f"{where}: expected true or false, got {value!r}")
    return value


def _name(entry: Any, where: str) -> str:
    if not isinstance(entry, dict):
        raise TopologyError(f"{where}: expected an object")
    name = entry.get("Name")
    if not isinstance(name, str) or not name or "/" in name:
        raise TopologyError(f"{where}.Name: expected a non-empty entity name without '/', got {name!r}")
    return name


def _queue(entry: Any, where: str) -> QueueSettings:
    name = _name(entry, where)
    props = entry.get("Properties", {})
    if not isinstance(props, dict):
        raise TopologyError(f"{where}.Properties: expected an object")
    kwargs: dict[str, Any] = {}
    for key, value in props.items():
        at = f"{where}.Properties.{key}"
        if key == "MaxDeliveryCount":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TopologyError(f"{at}: expected an integer >= 1, got {value!r}")
            kwargs["max_delivery_count"] = value
        elif key == "LockDuration":
            seconds = parse_duration(value, at)
            if seconds <= 0:
                raise TopologyError(f"{at}: must be longer than zero")
            kwargs["lock_duration"] = seconds
        elif key == "RequiresSession":
            kwargs["requires_session"] = _bool(value, at)
        elif key == "DefaultMessageTimeToLive":
            seconds = parse_duration(value, at)
            if seconds <= 0:
                raise TopologyError(f"{at}: must be longer than zero")
            kwargs["default_ttl"] = None if seconds >= _FOREVER_SECONDS else seconds
        elif key == "DeadLetteringOnMessageExpiration":
            kwargs["dead_lettering_on_expiration"] = _bool(value, at)
        elif key == "RequiresDuplicateDetection":
            kwargs["requires_duplicate_detection"] = _bool(value, at)
        elif key == "DuplicateDetectionHistoryTimeWindow":
            kwargs["duplicate_window"] = parse_duration(value, at)
        elif key in ("ForwardTo", "ForwardDeadLetteredMessagesTo"):
            if value:
                log.warning("%s=%r is not supported by this emulator and is ignored", at, value)
        else:
            raise TopologyError(f"{at}: unknown queue property")
    return QueueSettings(name=name, **kwargs)


def _topic(entry: Any, where: str) -> TopicSettings:
    name = _name(entry, where)
    subs = entry.get("Subscriptions", [])
    if not isinstance(subs, list):
        raise TopologyError(f"{where}.Subscriptions: expected a list")
    subscriptions = []
    for i, sub in enumerate(subs):
        sub_name = _name(sub, f"{where}.Subscriptions[{i}]")
        subscriptions.append(
            SubscriptionSettings(sub_name, dict(sub.get("Properties", {})), list(sub.get("Rules", [])))
        )
    return TopicSettings(name, dict(entry.get("Properties", {})), subscriptions)


def parse_topology(document: Any, source: str = "topology") -> Topology:
    """Validate the official emulator's `{"UserConfig": {"Namespaces": [...]}}` document."""
    if not isinstance(document, dict) or not isinstance(document.get("UserConfig"), dict):
        raise TopologyError(f"{source}: expected an object with a 'UserConfig' object")
    namespaces = document["UserConfig"].get("Namespaces")
    if not isinstance(namespaces, list) or len(namespaces) != 1:
        raise TopologyError(f"{source}: UserConfig.Namespaces must be a list of exactly one namespace")
    where = f"{source}: UserConfig.Namespaces[0]"
    namespace = _name(namespaces[0], where)
    raw_queues = namespaces[0].get("Queues", [])
    raw_topics = namespaces[0].get("Topics", [])
    if not isinstance(raw_queues, list):
        raise TopologyError(f"{where}.Queues: expected a list")
    if not isinstance(raw_topics, list):
        raise TopologyError(f"{where}.Topics: expected a list")
    queues = [_queue(q, f"{where}.Queues[{i}]") for i, q in enumerate(raw_queues)]
    topics = [_topic(t, f"{where}.Topics[{i}]") for i, t in enumerate(raw_topics)]
    seen: set[str] = set()
    for name in [q.name for q in queues] + [t.name for t in topics]:
        if name.lower() in seen:
            raise TopologyError(f"{where}: entity name {name!r} is declared twice (names are case-insensitive)")
        seen.add(name.lower())
    return Topology(namespace=namespace, queues=queues, topics=topics)


def load_topology(path: Path | str | None = None) -> Topology:
    path = Path(path) if path else DEFAULT_TOPOLOGY
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read topology file: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise TopologyError(f"{path}: not valid JSON: {exc}") from exc
    return parse_topology(document, str(path))
