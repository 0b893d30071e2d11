"""Topic names and their creation through the admin client.

Layout for a prefix ``P`` (default ``jobs-``):

* ``P<queue>`` — one topic per queue;
* ``P<queue>__delay-<n>s`` — the queue's delay tiers, one topic per tier;
* ``P__dead`` — the dead-letter topic (compacted, keyed by job id): the failed store;
* ``P__control`` — schedules, tick claims and purge marks (compacted, one partition).

Queue names may not contain ``__`` so that no queue topic can collide with
the driver's own topics.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewPartitions, NewTopic
from jobs_core.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    InvalidName,
    OperationTimedOut,
    UnsupportedOperation,
)
from jobs_core.message import validate_queue_name

from jobs_kafka.settings import KafkaSettings

RESERVED_MARK = "__"

log = logging.getLogger("jobs_kafka.topics")

#: Error codes of a broker that does not implement an admin request.
_UNSUPPORTED = (KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION)


def check_queue(queue: str) -> str:
    """Validate ``queue`` as a core queue name that does not contain ``__``."""
    validate_queue_name(queue)
    if RESERVED_MARK in queue:
        raise InvalidName(
            f"invalid queue name {queue!r} for the kafka driver: '__' is reserved for "
            "the driver's own topics (delay tiers, dead letters, schedules)"
        )
    return queue


def tier_label(seconds: float) -> str:
    """``5`` -> ``5s``, ``0.5`` -> ``500ms``."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


class TopicNames:
    """The topic names of one prefix."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.prefix = settings.topic_prefix
        self.tiers = settings.delay_tiers
        self.dead = f"{self.prefix}__dead"
        self.control = f"{self.prefix}__control"
        self.labels = {tier_label(tier): tier for tier in self.tiers}

    def tier_topics(self, queue: str) -> dict[float, str]:
        """The delay tier topics of ``queue``, by delay."""
        return {tier: self.tier_topic(queue, tier) for tier in self.tiers}

    def tier_topic(self, queue: str, tier: float) -> str:
        """The topic of one delay tier of ``queue``."""
        return f"{self.prefix}{queue}__delay-{tier_label(tier)}"

    def tier_of(self, topic: str) -> float | None:
        """The delay of a tier topic, or ``None`` if ``topic`` is not one."""
        head, sep, label = topic.rpartition("__delay-")
        return self.labels.get(label) if sep and head.startswith(self.prefix) else None

    def delays_group(self, queue: str) -> str:
        """The consumer group forwarding the delayed jobs of ``queue`` (one per queue, any app)."""
        return f"{self.prefix}{queue}__delays"

    def queue(self, queue: str) -> str:
        """Topic of a queue."""
        return self.prefix + queue

    def queue_of(self, topic: str) -> str | None:
        """The queue whose topic is ``topic``, or ``None`` for the driver's own topics."""
        if not topic.startswith(self.prefix):
            return None
        rest = topic[len(self.prefix) :]
        return None if RESERVED_MARK in rest or not rest else rest

    def owner_of(self, topic: str) -> str | None:
        """The queue a queue topic or one of its delay tiers belongs to (``None`` otherwise)."""
        queue = self.queue_of(topic)
        if queue is not None or self.tier_of(topic) is None:
            return queue
        rest = topic[len(self.prefix) : topic.rindex("__delay-")]
        return None if RESERVED_MARK in rest or not rest else rest

    def tier_for(self, remaining: float) -> float:
        """The largest tier not exceeding ``remaining`` (the smallest tier if none)."""
        chosen = self.tiers[0]
        for tier in self.tiers:
            if tier <= remaining:
                chosen = tier
        return chosen


class TopicAdmin:
    """Creates topics on demand (once per process) and reads metadata."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.names = TopicNames(settings)
        self.client = AdminClient(settings.admin_config())
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def unavailable(self, what: str, exc: BaseException | None = None) -> BackendUnavailable:
        """An error naming the brokers."""
        detail = f": {exc}" if exc is not None else ""
        return BackendUnavailable(f"kafka brokers {self.settings.display()} unavailable while {what}{detail}")

    def ensure(self, topics: Iterable[str], compacted: bool = False, partitions: int | None = None) -> None:
        """Create the topics that do not exist yet; raise if the brokers do not answer in time."""
        wanted = [t for t in dict.fromkeys(topics) if t not in self._known]
        if not wanted:
            return
        timeout = self.settings.timeout
        new = [self._new_topic(topic, compacted, partitions) for topic in wanted]
        try:
            futures = self.client.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
        except KafkaException as exc:
            raise self.unavailable(f"creating topics {', '.join(wanted)}", exc) from exc
        for topic, future in futures.items():
            try:
                future.result(timeout=timeout + 1)
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    queue = self.names.queue_of(topic)
                    if queue is not None and not compacted and partitions is None:
                        self._check_existing(queue, topic)
                elif isinstance(error, KafkaError) and error.code() in (
                    KafkaError._TIMED_OUT,
                    KafkaError.REQUEST_TIMED_OUT,
                ):
                    raise OperationTimedOut(
                        f"kafka brokers {self.settings.display()} did not create topic {topic} "
                        f"within {timeout:g} s"
                    ) from exc
                else:
                    raise self.unavailable(f"creating topic {topic}", exc) from exc
            except TimeoutError as exc:
                raise OperationTimedOut(
                    f"kafka brokers {self.settings.display()} did not create {topic} within {timeout:g} s"
                ) from exc
            with self._lock:
                self._known.add(topic)

    def partitions(self, topic: str) -> list[int] | None:
        """Partition ids of ``topic``, or ``None`` if it does not exist (never creates it)."""
        topics = self.list_topics()
        return topics.get(topic)

    def list_topics(self) -> dict[str, list[int]]:
        """Every topic with its partition ids."""
        try:
            metadata = self.client.list_topics(timeout=self.settings.timeout)
        except KafkaException as exc:
            raise self.unavailable("reading topic metadata", exc) from exc
        return {
            name: sorted(meta.partitions)
            for name, meta in metadata.topics.items()
            if meta.error is None or meta.error.code() == KafkaError.NO_ERROR
        }

    def forget(self, topic: str) -> None:
        """Drop ``topic`` from the cache of created topics."""
        with self._lock:
            self._known.discard(topic)

    def _new_topic(self, topic: str, compacted: bool, partitions: int | None) -> NewTopic:
        """A queue topic by its queue's settings; the driver's own topics by the driver's."""
        queue = self.names.queue_of(topic)
        if queue is not None and not compacted and partitions is None:
            spec = self.settings.topic_spec(queue)
            return NewTopic(
                topic,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                config=dict(spec.config),
            )
        config = {"cleanup.policy": "compact", "min.compaction.lag.ms": "3600000"} if compacted else {}
        return NewTopic(
            topic,
            num_partitions=partitions or self.settings.partitions,
            replication_factor=self.settings.replication_factor,
            config=config,
        )

    def _check_existing(self, queue: str, topic: str) -> None:
        """Compare an existing queue topic with its settings: grow it when asked, else warn."""
        spec = self.settings.topic_spec(queue)
        own = self.settings.queue_topics.get(queue)
        setting = f"queue[{queue}].partitions" if own is not None and own.partitions else "partitions"
        have = len(self.describe([topic]).get(topic, {}).get("partitions", []))
        if have and spec.partitions > have:
            if self.settings.grow_partitions:
                self.grow(topic, spec.partitions)
                log.warning(
                    "kafka topic %s grew from %d to %d partitions (%s=%d, grow_partitions=true); "
                    "jobs of one key written before and after may run out of order until the old "
                    "partitions are drained",
                    topic,
                    have,
                    spec.partitions,
                    setting,
                    spec.partitions,
                )
            else:
                log.warning(
                    "kafka topic %s has %d partition%s, fewer than %s=%d: the setting is not applied "
                    "to an existing topic; add grow_partitions=true to the URL or run "
                    "`jobs kafka topics alter %s --partitions %d` to add partitions",
                    topic,
                    have,
                    "" if have == 1 else "s",
                    setting,
                    spec.partitions,
                    queue,
                    spec.partitions,
                )
        elif spec.partitions < have:
            log.info(
                "kafka topic %s has %d partitions, more than %s=%d: Kafka cannot remove partitions, "
                "the topic keeps %d",
                topic,
                have,
                setting,
                spec.partitions,
                have,
            )
        if spec.config:
            current = self.configs([topic]).get(topic, {})
            differing = {k: v for k, v in spec.config.items() if current.get(k) != v}
            if differing:
                log.warning(
                    "kafka topic %s has %s where the URL asks %s: settings are not applied to an "
                    "existing topic; run `jobs kafka topics alter %s %s` to apply them",
                    topic,
                    ", ".join(f"{k}={current.get(k, '(broker default)')}" for k in differing),
                    ", ".join(f"{k}={v}" for k, v in differing.items()),
                    queue,
                    " ".join(f"--config {k}={v}" for k, v in differing.items()),
                )

    def future_result(self, future: Any, what: str) -> Any:
        """Wait for an admin future; Kafka errors as jobs errors naming ``what``."""
        try:
            return future.result(timeout=self.settings.timeout + 1)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            code = error.code() if isinstance(error, KafkaError) else None
            if code in _UNSUPPORTED:
                raise UnsupportedOperation(
                    "kafka", what, f"the brokers {self.settings.display()} refused it ({exc})"
                ) from exc
            if code in (
                KafkaError.INVALID_CONFIG,
                KafkaError.POLICY_VIOLATION,
                KafkaError.INVALID_PARTITIONS,
                KafkaError.INVALID_REPLICATION_FACTOR,
            ):
                raise ConfigurationError(
                    f"kafka brokers {self.settings.display()} refused {what}: {exc}"
                ) from exc
            if code in (KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT):
                raise OperationTimedOut(
                    f"kafka brokers {self.settings.display()} did not finish {what} "
                    f"within {self.settings.timeout:g} s"
                ) from exc
            raise BackendError(f"kafka brokers {self.settings.display()} failed {what}: {exc}") from exc
        except TimeoutError as exc:
            raise OperationTimedOut(
                f"kafka brokers {self.settings.display()} did not finish {what} "
                f"within {self.settings.timeout:g} s"
            ) from exc

    def describe(self, topics: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Partitions (id, leader, replicas, in-sync replicas) of the existing ``topics``."""
        try:
            metadata = self.client.list_topics(timeout=self.settings.timeout)
        except KafkaException as exc:
            raise self.unavailable("reading topic metadata", exc) from exc
        found: dict[str, dict[str, Any]] = {}
        for topic in topics:
            meta = metadata.topics.get(topic)
            if meta is None or (meta.error is not None and meta.error.code() != KafkaError.NO_ERROR):
                continue
            parts = [meta.partitions[p] for p in sorted(meta.partitions)]
            found[topic] = {
                "partitions": [
                    {"id": p.id, "leader": p.leader, "replicas": list(p.replicas), "isr": list(p.isrs)}
                    for p in parts
                ],
                "replication_factor": max((len(p.replicas) for p in parts), default=0),
            }
        return found

    def config_entries(self, topics: Sequence[str]) -> dict[str, dict[str, ConfigEntry]]:
        """The config entries (value, source) the brokers report for each topic."""
        if not topics:
            return {}
        try:
            futures = self.client.describe_configs(
                [ConfigResource(ResourceType.TOPIC, t) for t in topics], request_timeout=self.settings.timeout
            )
        except KafkaException as exc:
            raise self.unavailable("describing topic configs", exc) from exc
        return {
            resource.name: dict(self.future_result(future, f"DescribeConfigs of {resource.name}"))
            for resource, future in futures.items()
        }

    def configs(self, topics: Sequence[str]) -> dict[str, dict[str, str]]:
        """The config values the brokers report for each topic (defaults included where they list them)."""
        return {
            topic: {k: v.value for k, v in entries.items() if v.value is not None}
            for topic, entries in self.config_entries(topics).items()
        }

    def alter(self, topic: str, set_configs: Mapping[str, str], delete: Iterable[str] = ()) -> None:
        """Set and delete (back to the broker default) configs of ``topic`` (IncrementalAlterConfigs)."""
        entries = [
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in set_configs.items()
        ] + [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE) for k in delete]
        if not entries:
            return
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
        try:
            futures = self.client.incremental_alter_configs([resource], request_timeout=self.settings.timeout)
        except KafkaException as exc:
            raise self.unavailable(f"altering the configs of {topic}", exc) from exc
        for future in futures.values():
            self.future_result(future, f"IncrementalAlterConfigs of {topic}")

    def grow(self, topic: str, count: int) -> None:
        """Add partitions to ``topic`` up to ``count`` (Kafka cannot remove partitions)."""
        have = len(self.describe([topic]).get(topic, {}).get("partitions", []))
        if not have:
            raise ConfigurationError(f"kafka topic {topic} does not exist on {self.settings.display()}")
        if count < have:
            raise ConfigurationError(
                f"kafka topic {topic} has {have} partitions; Kafka cannot remove partitions, "
                f"so it cannot have {count}"
            )
        if count == have:
            return
        timeout = self.settings.timeout
        try:
            futures = self.client.create_partitions(
                [NewPartitions(topic, count)], operation_timeout=timeout, request_timeout=timeout
            )
        except KafkaException as exc:
            raise self.unavailable(f"adding partitions to {topic}", exc) from exc
        for future in futures.values():
            self.future_result(future, f"CreatePartitions of {topic} (from {have} to {count} partitions)")
