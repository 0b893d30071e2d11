"""``jobs kafka``: create, describe and alter the queue topics; move consumer groups.

Installed as a ``jobs`` sub-command through the ``jobs.cli`` entry point::

    jobs kafka topics list --url kafka://broker:9092
    jobs kafka topics describe emails --url kafka://broker:9092?group_id=app
    jobs kafka topics create emails --partitions 12 --config retention.ms=604800000
    jobs kafka topics alter emails --partitions 24 --config min.insync.replicas=2
    jobs kafka groups copy-offsets old-app --url kafka://broker:9092?group_id=app
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin._config import ConfigSource
from confluent_kafka.cimpl import NewTopic
from jobs_core.cli_output import emit_json, json_option, print_table, url_option
from jobs_core.errors import ConfigurationError, JobsError, UnsupportedOperation

from jobs_kafka.group_admin import copy_offsets, group_name
from jobs_kafka.offsets import probe_groups
from jobs_kafka.settings import KafkaSettings
from jobs_kafka.topic_settings import check_replicas, check_topic_config
from jobs_kafka.topics import TopicAdmin, check_queue

#: Configs ``describe`` always shows (whatever their source); other configs only when set on the topic.
SHOWN_CONFIGS = (
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "min.insync.replicas",
    "max.message.bytes",
)


class _Group(click.Group):
    """Report jobs errors in one line: status 2 for usage and configuration, 1 for the brokers."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a :class:`JobsError` becomes one line on stderr and an exit status."""
        try:
            return super().invoke(ctx)
        except JobsError as exc:
            click.echo(f"jobs: error: {' '.join(str(exc).split())}", err=True)
            sys.exit(2 if isinstance(exc, (ConfigurationError, UnsupportedOperation)) else 1)


def _url(function: Any) -> Any:
    """``--url`` (default ``$JOBS_URL``): a ``kafka://`` URL whose prefix and topic settings apply."""
    return url_option(function)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _admin(url: str | None) -> TopicAdmin:
    if not url:
        raise ConfigurationError("jobs kafka needs the brokers: pass --url kafka://host:9092 or set JOBS_URL")
    return TopicAdmin(KafkaSettings.parse(url, {}))


def _queues(admin: TopicAdmin, asked: Sequence[str]) -> list[str]:
    """The queues asked for, else every queue with a topic (or delay tiers) under the prefix."""
    if asked:
        return [check_queue(q) for q in asked]
    return sorted({q for q in (admin.names.owner_of(t) for t in admin.list_topics()) if q})


def _configs(pairs: Sequence[str], where: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ConfigurationError(f"--config {pair!r}: expected NAME=VALUE, e.g. retention.ms=604800000")
        found[name.strip()] = check_topic_config(name.strip(), value, f"--config {pair}")
    return found


def _state(admin: TopicAdmin, queues: Sequence[str], with_configs: bool) -> list[dict[str, Any]]:
    """Per queue: its topic's shape, configs, and the group's committed and end offsets."""
    settings, names = admin.settings, admin.names
    topics = [names.queue(q) for q in queues]
    shapes = admin.describe(topics)
    requests = {
        group_name(settings.group_id, q): [(t, p["id"]) for p in shapes[t]["partitions"]]
        for q, t in zip(queues, topics, strict=True)
        if t in shapes
    }
    offsets = {(o.topic, o.partition): o for o in probe_groups(settings, admin.client, requests)}
    configs = _topic_configs(admin, [t for t in topics if t in shapes]) if with_configs else {}
    rows: list[dict[str, Any]] = []
    for queue, topic in zip(queues, topics, strict=True):
        shape = shapes.get(topic)
        row: dict[str, Any] = {"queue": queue, "topic": topic, "group": group_name(settings.group_id, queue)}
        if shape is None:
            rows.append({**row, "exists": False})
            continue
        parts = []
        for part in shape["partitions"]:
            o = offsets[(topic, part["id"])]
            parts.append({**part, "committed": o.committed, "end": o.high, "lag": o.lag})
        row.update(
            exists=True,
            partitions=len(parts),
            replication_factor=shape["replication_factor"],
            committed=sum(p["committed"] for p in parts),
            end=sum(p["end"] for p in parts),
            lag=sum(p["lag"] for p in parts),
            partition_offsets=parts,
        )
        if with_configs:
            row["configs"] = configs.get(topic, {})
        rows.append(row)
    return rows


def _topic_configs(admin: TopicAdmin, topics: Sequence[str]) -> dict[str, dict[str, str]]:
    """The configs set on each topic, and the :data:`SHOWN_CONFIGS` whatever their source."""
    found: dict[str, dict[str, str]] = {}
    for topic, entries in admin.config_entries(topics).items():
        found[topic] = {
            name: entry.value
            for name, entry in sorted(entries.items())
            if entry.value is not None
            and (
                name in SHOWN_CONFIGS
                or getattr(entry.source, "value", entry.source) == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
            )
        }
    return found


@click.group(name="kafka", cls=_Group)
def kafka() -> None:
    """Operate the Kafka driver's queue topics and consumer groups."""


@kafka.group(cls=_Group)
def topics() -> None:
    """List, describe, create and alter the queue topics."""


@topics.command(name="list")
@_url
@json_option
def list_topics(url: str | None, as_json: bool) -> None:
    """Every queue: partitions, replication, the group's committed offsets, end offsets and lag."""
    admin = _admin(url)
    rows = _state(admin, _queues(admin, ()), with_configs=False)
    if as_json:
        emit_json([{k: v for k, v in r.items() if k != "partition_offsets"} for r in rows])
        return
    table = [[r["queue"], r["topic"], *(str(r[k]) if r["exists"] else "-" for k in _COUNTS)] for r in rows]
    print_table(["QUEUE", "TOPIC", "PARTITIONS", "REPLICAS", "COMMITTED", "END", "LAG"], table, range(2, 7))


_COUNTS = ("partitions", "replication_factor", "committed", "end", "lag")


@topics.command()
@_url
@click.argument("queues", nargs=-1, metavar="[QUEUE]...")
@json_option
def describe(url: str | None, queues: Sequence[str], as_json: bool) -> None:
    """Each queue's topic: partitions, replicas, configs, and per partition the group's
    committed offset, the end offset and the lag (all queues when none is named).
    """
    admin = _admin(url)
    rows = _state(admin, _queues(admin, queues), with_configs=True)
    if as_json:
        emit_json(rows)
        return
    for index, row in enumerate(rows):
        if index:
            click.echo()
        if not row["exists"]:
            click.echo(f"queue {row['queue']}: no topic {row['topic']} (only delayed jobs, or none yet)")
            continue
        click.echo(
            f"queue {row['queue']}: topic {row['topic']}, {_plural(row['partitions'], 'partition')}, "
            f"replication factor "
            f"{row['replication_factor']}, group {row['group']}, lag {row['lag']}"
        )
        configs = ", ".join(f"{k}={v}" for k, v in row["configs"].items()) or "(broker defaults)"
        click.echo(f"configs: {configs}")
        table = [
            [str(p["id"]), str(p["leader"]), ",".join(map(str, p["replicas"])), ",".join(map(str, p["isr"]))]
            + [str(p[k]) for k in ("committed", "end", "lag")]
            for p in row["partition_offsets"]
        ]
        print_table(
            ["PARTITION", "LEADER", "REPLICAS", "ISR", "COMMITTED", "END", "LAG"], table, (0, 4, 5, 6)
        )


@topics.command()
@_url
@click.argument("queues", nargs=-1, required=True, metavar="QUEUE...")
@click.option("--partitions", type=click.IntRange(min=1), help="Partitions (default: the URL's settings).")
@click.option(
    "--replication-factor",
    type=click.IntRange(min=-1),
    help="Replicas of each partition (-1: broker default).",
)
@click.option("--config", "configs", multiple=True, metavar="NAME=VALUE", help="A topic config (repeatable).")
@json_option
def create(
    url: str | None,
    queues: Sequence[str],
    *,
    partitions: int | None,
    replication_factor: int | None,
    configs: Sequence[str],
    as_json: bool,
) -> None:
    """Create the topics of QUEUE... with the URL's topic settings and these options."""
    if replication_factor == 0:
        raise ConfigurationError("--replication-factor must be at least 1, or -1 for the broker's default")
    admin = _admin(url)
    extra = _configs(configs, "create")
    results: list[dict[str, Any]] = []
    for queue in queues:
        spec = admin.settings.topic_spec(check_queue(queue))
        count = partitions or spec.partitions
        replicas = replication_factor if replication_factor is not None else spec.replication_factor
        config = {**spec.config, **extra}
        check_replicas(replicas, config, f"the topic of {queue}")
        topic = admin.names.queue(queue)
        created = _create(admin, topic, count, replicas, config)
        if not created:  # what it has, not what was asked
            count = len(admin.describe([topic]).get(topic, {"partitions": []})["partitions"])
        results.append({"queue": queue, "topic": topic, "created": created, "partitions": count})
    if as_json:
        emit_json(results)
        return
    for result in results:
        state = "created" if result["created"] else "already exists:"
        click.echo(f"topic {result['topic']} {state} {_plural(result['partitions'], 'partition')}")


def _create(admin: TopicAdmin, topic: str, partitions: int, replicas: int, config: dict[str, str]) -> bool:
    timeout = admin.settings.timeout
    new = NewTopic(topic, num_partitions=partitions, replication_factor=replicas, config=config)
    try:
        future = admin.client.create_topics([new], operation_timeout=timeout, request_timeout=timeout)[topic]
    except KafkaException as exc:
        raise admin.unavailable(f"creating topic {topic}", exc) from exc
    try:
        future.result(timeout=timeout + 1)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
    admin.future_result(future, f"CreateTopics of {topic}")
    return True


@topics.command()
@_url
@click.argument("queues", nargs=-1, required=True, metavar="QUEUE...")
@click.option("--partitions", type=click.IntRange(min=1), help="Grow to this many partitions (never fewer).")
@click.option(
    "--config", "configs", multiple=True, metavar="NAME=VALUE", help="Set a topic config (repeatable)."
)
@click.option("--delete-config", "deleted", multiple=True, metavar="NAME", help="Back to the broker default.")
def alter(
    url: str | None,
    queues: Sequence[str],
    partitions: int | None,
    configs: Sequence[str],
    deleted: Sequence[str],
) -> None:
    """Set configs of, or add partitions to, the topics of QUEUE...

    Adding partitions moves where new jobs of one key go: until the jobs
    written before are done, jobs of one key may run out of order.
    """
    admin = _admin(url)
    wanted = _configs(configs, "alter")
    for name in deleted:
        check_topic_config(
            name, "0" if not name.startswith("cleanup") else "delete", f"--delete-config {name}"
        )
    if partitions is None and not wanted and not deleted:
        raise ConfigurationError(
            "nothing to alter: give --partitions, --config NAME=VALUE or --delete-config NAME"
        )
    for queue in queues:
        topic = admin.names.queue(check_queue(queue))
        if admin.partitions(topic) is None:
            raise ConfigurationError(f"queue {queue!r} has no topic {topic} on {admin.settings.display()}")
        if wanted or deleted:
            admin.alter(topic, wanted, deleted)
            changes = [*(f"{k}={v}" for k, v in wanted.items()), *(f"{k} reset" for k in deleted)]
            click.echo(f"topic {topic}: {', '.join(changes)}")
        if partitions is not None:
            before = len(admin.partitions(topic) or [])
            admin.grow(topic, partitions)
            click.echo(f"topic {topic}: {before} -> {partitions} partitions")


@kafka.group(cls=_Group)
def groups() -> None:
    """Move the committed offsets of the queues' consumer groups."""


@groups.command(name="copy-offsets")
@_url
@click.argument("old_group_id", metavar="OLD_GROUP_ID")
@click.option("--queue", "-q", "queues", multiple=True, metavar="NAME", help="Only this queue (repeatable).")
@click.option("--force", is_flag=True, help="Replace offsets the URL's groups committed already.")
@json_option
def copy(url: str | None, old_group_id: str, queues: Sequence[str], force: bool, as_json: bool) -> None:
    """Start the URL's group_id where OLD_GROUP_ID stopped, on every queue (or those named).

    Run it with the new group's workers stopped, before they start: a new
    group_id otherwise reads each queue from its earliest retained job.
    """
    admin = _admin(url)
    copied = copy_offsets(admin, old_group_id, queues or None, force=force)
    if as_json:
        emit_json([{**c.__dict__, "offsets": {str(p): o for p, o in c.offsets.items()}} for c in copied])
        return
    for c in copied:
        if c.offsets:
            where = ", ".join(f"partition {p}: {o}" for p, o in sorted(c.offsets.items()))
            click.echo(f"{c.target} now starts where {c.source} stopped on {c.topic} ({where})")
        else:
            click.echo(f"{c.source} has no committed offsets on {c.topic}: nothing copied")
