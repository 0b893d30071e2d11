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

import threading
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from jobs_core.errors import BackendUnavailable, InvalidName, OperationTimedOut
from jobs_core.message import validate_queue_name

from jobs_kafka.settings import KafkaSettings

RESERVED_MARK = "__"


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
        config = {"cleanup.policy": "compact", "min.compaction.lag.ms": "3600000"} if compacted else {}
        new = [
            NewTopic(
                topic,
                num_partitions=partitions or self.settings.partitions,
                replication_factor=self.settings.replication_factor,
                config=config,
            )
            for topic in wanted
        ]
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
                    pass
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
