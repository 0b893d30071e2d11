"""Settings of the queue topics: Kafka topic configs for all queues and per queue.

URL form (and the same keys in the dict form)::

    kafka://host:9092?partitions=6&topic_config.retention.ms=604800000
        &topic_config.min.insync.replicas=2
        &queue[emails].partitions=12&queue[emails].retention.ms=86400000

* ``topic_config.<config>=<value>`` — a Kafka topic config of every queue topic;
* ``queue[<queue>].partitions`` / ``queue[<queue>].replication_factor`` /
  ``queue[<queue>].<config>`` — one queue's own (they win over the others).

Dict form: ``topic_config={"retention.ms": 604800000}`` and
``queue_topics={"emails": {"partitions": 12, "retention.ms": 86400000}}``.
These apply to the queue topics only; delay tiers, the dead-letter and the
control topics keep the driver's own settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs_core.errors import ConfigurationError
from jobs_core.message import QUEUE_NAME_PATTERN

#: Kafka's topic-level configs (``confluent.*`` configs pass too).
TOPIC_CONFIGS = frozenset(
    {
        "cleanup.policy",
        "compression.type",
        "delete.retention.ms",
        "file.delete.delay.ms",
        "flush.messages",
        "flush.ms",
        "follower.replication.throttled.replicas",
        "index.interval.bytes",
        "leader.replication.throttled.replicas",
        "local.retention.bytes",
        "local.retention.ms",
        "max.compaction.lag.ms",
        "max.message.bytes",
        "message.downconversion.enable",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.difference.max.ms",
        "message.timestamp.type",
        "min.cleanable.dirty.ratio",
        "min.compaction.lag.ms",
        "min.insync.replicas",
        "preallocate",
        "remote.storage.enable",
        "retention.bytes",
        "retention.ms",
        "segment.bytes",
        "segment.index.bytes",
        "segment.jitter.ms",
        "segment.ms",
        "unclean.leader.election.enable",
    }
)

_ALL_PREFIX = "topic_config."
_QUEUE_KEY = re.compile(r"^queue\[(?P<queue>[^\]]*)\]\.(?P<setting>.+)$")


@dataclass(frozen=True)
class TopicSpec:
    """How one queue topic is created: partitions, replication factor, Kafka configs."""

    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueTopicSettings:
    """One queue's own topic settings (``None``: the driver-wide value)."""

    partitions: int | None = None
    replication_factor: int | None = None
    config: Mapping[str, str] = field(default_factory=dict)


def is_topic_key(key: str) -> bool:
    """Whether ``key`` is a queue-topic setting (rather than a librdkafka one)."""
    return key in ("topic_config", "queue_topics") or key.startswith(_ALL_PREFIX) or key.startswith("queue[")


_BOOLS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def as_bool(name: str, value: object) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``) as a bool."""
    found = value if isinstance(value, bool) else _BOOLS.get(str(value).strip().lower())
    if found is None:
        raise ConfigurationError(f"kafka setting {name} must be true or false, got {value!r}")
    return found


def as_int(name: str, value: object, minimum: int) -> int:
    """An integer setting of at least ``minimum``."""
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigurationError(f"kafka setting {name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ConfigurationError(f"kafka setting {name} must be at least {minimum}, got {number}")
    return number


def check_topic_config(name: str, value: object, where: str) -> str:
    """Validate one Kafka topic config of a queue topic; returns its value as text."""
    text = str(value).lower() if isinstance(value, bool) else str(value).strip()
    if name not in TOPIC_CONFIGS and not name.startswith("confluent."):
        raise ConfigurationError(
            f"unknown Kafka topic config {name!r} in {where}; topic configs are "
            f"{', '.join(sorted(TOPIC_CONFIGS))} (and confluent.*)"
        )
    if not text:
        raise ConfigurationError(f"Kafka topic config {name} in {where} needs a value")
    if name == "cleanup.policy" and text != "delete":
        raise ConfigurationError(
            f"cleanup.policy={text} in {where}: queue topics must use cleanup.policy=delete; "
            "a compacted queue would refuse jobs without a key and drop all but the last job of each key"
        )
    if name.endswith((".ms", ".bytes", ".messages")) or name == "min.insync.replicas":
        minimum = 1 if name in ("min.insync.replicas", "segment.bytes", "max.message.bytes") else -1
        as_int(f"{where} (Kafka topic config {name})", text, minimum)
    return text


def _count(name: str, value: object, minimum: int) -> int:
    return -1 if name.endswith("replication_factor") and str(value) == "-1" else as_int(name, value, minimum)


def parse_topic_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """``topic_config`` and ``queue_topics`` from the URL's (or dict form's) topic keys."""
    every: dict[str, str] = {}
    queues: dict[str, dict[str, Any]] = {}
    flat: list[tuple[str, object]] = []
    for key, value in values.items():
        if key in ("topic_config", "queue_topics"):
            if not isinstance(value, Mapping):
                raise ConfigurationError(f"kafka option {key} must be a dict")
            if key == "topic_config":
                flat += [(_ALL_PREFIX + str(k), v) for k, v in value.items()]
            else:
                for queue, settings in value.items():
                    if not isinstance(settings, Mapping):
                        raise ConfigurationError(f"kafka option queue_topics[{queue!r}] must be a dict")
                    flat += [(f"queue[{queue}].{k}", v) for k, v in settings.items()]
        else:
            flat.append((key, value))
    for key, value in flat:
        if key.startswith(_ALL_PREFIX):
            name = key[len(_ALL_PREFIX) :]
            every[name] = check_topic_config(name, value, key)
            continue
        match = _QUEUE_KEY.match(key)
        if match is None:
            raise ConfigurationError(
                f"invalid kafka setting {key!r}: a queue's topic settings are written "
                "queue[<queue>].partitions, queue[<queue>].replication_factor "
                "or queue[<queue>].<topic config>"
            )
        queue, setting = match["queue"], match["setting"]
        if not QUEUE_NAME_PATTERN.fullmatch(queue) or "__" in queue:
            raise ConfigurationError(f"invalid queue name {queue!r} in kafka setting {key!r}")
        own = queues.setdefault(queue, {"config": {}})
        if setting == "partitions":
            own["partitions"] = _count(key, value, 1)
        elif setting == "replication_factor":
            own["replication_factor"] = _count(key, value, 1)
        else:
            own["config"][setting] = check_topic_config(setting, value, key)
    return {
        "topic_config": every,
        "queue_topics": {queue: QueueTopicSettings(**own) for queue, own in queues.items()},
    }


def check_replicas(replication_factor: int, config: Mapping[str, str], where: str) -> None:
    """Refuse ``min.insync.replicas`` above a known replication factor (every write would fail)."""
    wanted = config.get("min.insync.replicas")
    if wanted is not None and replication_factor > 0 and int(wanted) > replication_factor:
        raise ConfigurationError(
            f"min.insync.replicas={wanted} exceeds replication factor {replication_factor} for {where}: "
            "every write with acks=all would be refused"
        )


def topic_spec(
    queue: str,
    partitions: int,
    replication_factor: int,
    topic_config: Mapping[str, str],
    queue_topics: Mapping[str, QueueTopicSettings],
) -> TopicSpec:
    """The settings of the queue topic of ``queue``: its own, else the driver-wide ones."""
    own = queue_topics.get(queue, QueueTopicSettings())
    return TopicSpec(
        partitions=own.partitions if own.partitions is not None else partitions,
        replication_factor=own.replication_factor
        if own.replication_factor is not None
        else replication_factor,
        config={**topic_config, **own.config},
    )
