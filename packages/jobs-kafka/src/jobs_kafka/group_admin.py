"""Consumer groups across ``group_id`` values: a renamed ``group_id`` and its old offsets.

The group of queue ``q`` is ``<group_id>.q``. A new ``group_id`` starts
groups with no committed offsets, which read each queue topic from its
earliest retained record: every job still retained runs again. A worker
warns when that happens while another group of this form has committed
offsets on the topic, and :func:`copy_offsets` (``jobs kafka groups
copy-offsets OLD``) starts the new groups where the old ones stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from jobs_core.errors import BackendError, ConfigurationError

from jobs_kafka.offsets import committed_offsets
from jobs_kafka.topics import TopicAdmin, check_queue

log = logging.getLogger("jobs_kafka.groups")


def group_name(group_id: str, queue: str) -> str:
    """The consumer group of ``queue`` for the application ``group_id``."""
    return f"{group_id}.{queue}"


def committed_by_group(admin: TopicAdmin, groups: Iterable[str], topic: str) -> dict[str, dict[int, int]]:
    """``group -> partition -> committed offset`` on ``topic`` (only those that committed one)."""
    partitions = admin.partitions(topic) or []
    requests = {group: [(topic, p) for p in partitions] for group in groups}
    found: dict[str, dict[int, int]] = {}
    for (group, _, partition), offset in committed_offsets(admin.settings, admin.client, requests).items():
        if offset >= 0:
            found.setdefault(group, {})[partition] = offset
    return found


def queue_groups(admin: TopicAdmin, queue: str) -> list[str]:
    """Groups the brokers list whose name has the form ``<any group_id>.<queue>``."""
    timeout = admin.settings.timeout
    try:
        listed = admin.client.list_consumer_groups(request_timeout=timeout).result(timeout=timeout + 1)
    except KafkaException as exc:
        raise admin.unavailable("listing consumer groups", exc) from exc
    suffix = "." + queue
    return sorted(g.group_id for g in listed.valid if g.group_id.endswith(suffix) and g.group_id != suffix)


def other_groups(admin: TopicAdmin, queue: str) -> dict[str, dict[int, int]]:
    """When this application's group of ``queue`` has no committed offset on the queue
    topic: the other groups of this form that have, with their offsets (else nothing).
    """
    topic = admin.names.queue(queue)
    own = group_name(admin.settings.group_id, queue)
    if committed_by_group(admin, [own], topic):
        return {}
    others = [g for g in queue_groups(admin, queue) if g != own]
    return committed_by_group(admin, others, topic) if others else {}


def warn_if_renamed(admin: TopicAdmin, queue: str) -> None:
    """Log a warning when a new group starts on a topic that other groups consumed."""
    try:
        others = other_groups(admin, queue)
    except Exception as exc:  # a broker without group listing: no warning, never a failure
        log.debug("could not compare the consumer groups of queue %s: %s", queue, exc)
        return
    if not others:
        return
    group = group_name(admin.settings.group_id, queue)
    described = "; ".join(
        f"{name} at " + ", ".join(f"partition {p}: {o}" for p, o in sorted(offsets.items()))
        for name, offsets in sorted(others.items())
    )
    old = next(iter(sorted(others)))
    old_id = old[: -len(queue) - 1]
    log.warning(
        "kafka consumer group %s has no committed offsets on topic %s and reads it from its earliest "
        "retained record (every retained job of queue %s runs again), while other groups committed "
        "offsets on it (%s). If group_id was renamed, stop these workers and run "
        "`jobs kafka groups copy-offsets %s --queue %s` with this URL to start where %s stopped",
        group,
        admin.names.queue(queue),
        queue,
        described,
        old_id,
        queue,
        old,
    )


@dataclass(frozen=True)
class CopiedOffsets:
    """Offsets copied from one group to another on one queue topic."""

    queue: str
    topic: str
    source: str
    target: str
    #: Partition -> offset now committed by ``target`` (empty: the source had none).
    offsets: dict[int, int]


def copy_offsets(
    admin: TopicAdmin, old_group_id: str, queues: Iterable[str] | None = None, force: bool = False
) -> list[CopiedOffsets]:
    """Commit, for this application's group of each queue, the offsets the group of
    ``old_group_id`` committed. Refuses a target group that has committed offsets
    of its own unless ``force``. The target's workers must be stopped (Kafka
    refuses to move the offsets of a group with members).
    """
    settings = admin.settings
    if old_group_id == settings.group_id:
        raise ConfigurationError(f"group_id {old_group_id!r} is this URL's own group_id: nothing to copy")
    names = admin.names
    if queues is None:
        queues = sorted({q for q in (names.queue_of(t) for t in admin.list_topics()) if q})
    plans: list[CopiedOffsets] = []
    for queue in queues:
        check_queue(queue)
        topic = names.queue(queue)
        if admin.partitions(topic) is None:
            raise ConfigurationError(f"queue {queue!r} has no topic {topic} on {settings.display()}")
        source, target = group_name(old_group_id, queue), group_name(settings.group_id, queue)
        found = committed_by_group(admin, [source, target], topic)
        if found.get(target) and not force:
            raise ConfigurationError(
                f"consumer group {target} already committed offsets on {topic} ("
                + ", ".join(f"partition {p}: {o}" for p, o in sorted(found[target].items()))
                + "); pass --force to replace them"
            )
        plans.append(CopiedOffsets(queue, topic, source, target, found.get(source, {})))
    for plan in plans:
        if not plan.offsets:
            continue
        request = ConsumerGroupTopicPartitions(
            plan.target, [TopicPartition(plan.topic, p, o) for p, o in sorted(plan.offsets.items())]
        )
        try:
            for future in admin.client.alter_consumer_group_offsets([request]).values():
                future.result(timeout=settings.timeout + 1)
        except (KafkaException, TimeoutError) as exc:
            raise BackendError(
                f"kafka brokers {settings.display()} refused to set the offsets of group {plan.target} "
                f"(stop its workers first): {exc}"
            ) from exc
    return plans
