"""The driver's settings, parsed from a ``kafka://`` URL or the dict form.

URL form::

    kafka://broker1:9092,broker2:9092?group_id=app&topic_prefix=jobs-&compression=zstd
        &partitions=6&replication_factor=3&session.timeout.ms=10000

Dict form (``driver="kafka"``)::

    brokers="broker1:9092,broker2:9092" (or a list), group_id="app",
    topic_prefix="jobs-", compression="zstd", config={"security.protocol": "SASL_SSL", ...}

Query parameters and options whose name contains a dot (``session.timeout.ms``,
``sasl.password``) are librdkafka settings, passed through to the clients.
Everything else must be one of the driver's own settings below.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from jobs_core.errors import ConfigurationError, InvalidName, InvalidURL
from jobs_core.urls import is_secret_key, redact_text, redact_url, split_credentials

from jobs_kafka.topic_settings import (
    QueueTopicSettings,
    TopicSpec,
    as_bool,
    as_int,
    check_replicas,
    is_topic_key,
    parse_topic_settings,
    topic_spec,
)

#: The librdkafka settings without a dot that may be passed through.
DOTLESS_LIBRDKAFKA = frozenset({"acks", "debug", "retries", "partitioner"})

#: Settings only a consumer understands (kept away from producers and admin clients).
_CONSUMER_ONLY = (
    "group.",
    "session.",
    "heartbeat.",
    "fetch.",
    "auto.offset.",
    "enable.auto.",
    "max.poll.",
    "partition.assignment.",
    "queued.",
    "isolation.",
    "max.partition.fetch.",
    "check.crcs",
    "enable.partition.eof",
    "coordinator.",
)
#: Settings only a producer understands.
_PRODUCER_ONLY = (
    "linger.",
    "queue.buffering.",
    "batch.",
    "message.timeout.",
    "delivery.timeout.",
    "compression.",
    "enable.idempotence",
    "acks",
    "retries",
    "request.timeout.",
    "partitioner",
    "sticky.",
    "transaction",
    "enable.gapless.",
    "retry.backoff.",
    "max.in.flight",
)

#: Consumer-group timing: a dead worker's partitions move within about 7 s (its
#: session expires after 6 s, the smallest Kafka accepts by default, and the
#: others hear of the rebalance within a heartbeat). No ``group.instance.id``:
#: a static member's partitions wait the whole session timeout even when it stops
#: cleanly. Either may be overridden like any librdkafka setting.
GROUP_DEFAULTS: dict[str, int] = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}

PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]{0,100}$")
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
DEFAULT_TIERS = (1.0, 5.0, 30.0, 300.0, 3600.0)

log = logging.getLogger("jobs_kafka")


_as_int = as_int


def _as_float(name: str, value: object, minimum: float) -> float:
    try:
        number = float(str(value))
    except ValueError:
        raise ConfigurationError(f"kafka setting {name} must be a number, got {value!r}") from None
    if not number >= minimum:
        raise ConfigurationError(f"kafka setting {name} must be at least {minimum}, got {number}")
    return number


def _parse_tiers(value: object) -> tuple[float, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    tiers = sorted({_as_float("delay_tiers", item, 0.001) for item in items if str(item).strip()})
    if not tiers:
        raise ConfigurationError("kafka setting delay_tiers needs at least one delay in seconds")
    return tuple(tiers)


def _parse_brokers(value: object) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    brokers = tuple(str(item).strip() for item in items if str(item).strip())
    if not brokers:
        raise ConfigurationError("the kafka driver needs at least one broker: kafka://host:9092")
    for broker in brokers:
        host, sep, port = broker.rpartition(":")
        if not sep or not host or not port.isdigit() or "@" in host or "/" in host:
            raise InvalidURL(f"invalid kafka broker address {redact_url(broker)!r}: expected host:port")
    return brokers


@dataclass(frozen=True)
class KafkaSettings:
    """Everything the driver needs to know, validated."""

    #: ``host:port`` of the bootstrap brokers.
    brokers: tuple[str, ...]
    #: Consumer group of the workers; every worker of one application shares it.
    group_id: str = "jobs"
    #: Prepended to every topic name (``jobs-`` + queue ``emails`` = ``jobs-emails``).
    topic_prefix: str = "jobs-"
    #: Producer compression: ``none``, ``gzip``, ``snappy``, ``lz4`` or ``zstd``.
    compression: str = "lz4"
    #: Partitions of the topics the driver creates (ordering holds per partition).
    partitions: int = 1
    #: Replication factor of created topics; ``-1`` uses the broker's default.
    replication_factor: int = -1
    #: Seconds of the delay tiers (one topic each).
    delay_tiers: tuple[float, ...] = DEFAULT_TIERS
    #: Seconds ``enqueue`` and admin calls wait for the brokers before raising.
    timeout: float = 30.0
    #: Records fetched but not yet committed per partition before the partition is paused.
    max_in_flight: int = 2000
    #: Seconds a revoked partition waits for its running jobs before it is given up.
    rebalance_grace: float = 5.0
    #: Seconds between asynchronous commits of finished work: what a killed worker's
    #: partitions run again beyond its unfinished jobs (with the worker's ack_interval).
    commit_interval: float = 0.05
    #: Most seconds an empty ``reserve`` waits beyond its timeout while a partition
    #: is not known to be read to its end (a fetch in flight).
    reserve_min_wait: float = 1.0
    #: Seconds the first ``reserve`` of a queue waits for the group to assign partitions.
    join_timeout: float = 30.0
    #: librdkafka settings passed through to every client.
    config: Mapping[str, str] = field(default_factory=dict)
    #: Kafka topic configs of every queue topic (``topic_config.retention.ms=...``).
    topic_config: Mapping[str, str] = field(default_factory=dict)
    #: Each queue's own topic settings (``queue[emails].partitions=12``).
    queue_topics: Mapping[str, QueueTopicSettings] = field(default_factory=dict)
    #: Add partitions to an existing queue topic with fewer than asked (else a warning).
    grow_partitions: bool = False

    def topic_spec(self, queue: str) -> TopicSpec:
        """Partitions, replication factor and Kafka configs of the topic of ``queue``."""
        return topic_spec(
            queue, self.partitions, self.replication_factor, self.topic_config, self.queue_topics
        )

    @property
    def bootstrap(self) -> str:
        """The ``bootstrap.servers`` value."""
        return ",".join(self.brokers)

    def topic(self, queue: str) -> str:
        """The topic of ``queue``."""
        return self.topic_prefix + queue

    def display(self) -> str:
        """The brokers, for error messages (no credentials)."""
        return self.bootstrap

    def __repr__(self) -> str:
        return (
            f"KafkaSettings(brokers={self.bootstrap!r}, group_id={self.group_id!r}, "
            f"topic_prefix={self.topic_prefix!r}, config={self.redacted_config()!r})"
        )

    # -- client configurations -------------------------------------------------

    def _passthrough(self, exclude: tuple[str, ...]) -> dict[str, Any]:
        return {k: v for k, v in self.config.items() if not k.startswith(exclude)}

    def common(self) -> dict[str, Any]:
        """Settings shared by every client."""
        return {
            "bootstrap.servers": self.bootstrap,
            "logger": logging.getLogger("jobs_kafka.librdkafka"),
        }

    def producer_config(self, **overrides: Any) -> dict[str, Any]:
        """An idempotent producer that acknowledges only fully replicated writes."""
        timeout_ms = max(1000, int(self.timeout * 1000))
        conf: dict[str, Any] = {
            **self.common(),
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": self.compression,
            "linger.ms": 5,
            # Keyed records land where a Java producer puts them (its default partitioner).
            "partitioner": "murmur2_random",
            "message.timeout.ms": timeout_ms,
            "socket.connection.setup.timeout.ms": timeout_ms,
        }
        conf.update(self._passthrough(_CONSUMER_ONLY))
        conf.update(overrides)
        return conf

    def consumer_config(self, group_id: str, **overrides: Any) -> dict[str, Any]:
        """A consumer that never commits on its own and stores no offsets by itself."""
        conf: dict[str, Any] = {
            **self.common(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.partition.eof": True,
            **GROUP_DEFAULTS,
        }
        conf.update(self._passthrough(_PRODUCER_ONLY))
        conf.update(overrides)
        return conf

    def admin_config(self) -> dict[str, Any]:
        """An admin client."""
        conf: dict[str, Any] = dict(self.common())
        conf.update(self._passthrough(_PRODUCER_ONLY + _CONSUMER_ONLY))
        return conf

    def redacted_config(self) -> dict[str, str]:
        """The passthrough settings with secrets hidden (for reprs and logs)."""
        return {k: ("***" if is_secret_key(k) else v) for k, v in self.config.items()}

    # -- parsing ---------------------------------------------------------------

    @classmethod
    def parse(cls, url: str | None, options: Mapping[str, Any]) -> KafkaSettings:
        """Settings from a ``kafka://`` URL and/or the dict-form options (options win).

        Raises :class:`~jobs_core.errors.ConfigurationError` (or a subclass)
        whose text never holds a secret of ``url`` or of the options.
        """
        secrets = [str(v) for k, v in _secret_options(options)]
        try:
            return cls._parse(url, options)
        except ConfigurationError as exc:
            text = redact_text(str(exc), url, secrets)
            if text == str(exc):
                raise
            raise type(exc)(text) from None

    @classmethod
    def _parse(cls, url: str | None, options: Mapping[str, Any]) -> KafkaSettings:
        values: dict[str, Any] = {}
        config: dict[str, str] = {}
        if url is not None:
            # kafka://user:password@host:9092 is SASL credentials (set security.protocol too);
            # the password may hold an unencoded @, :, /, ? or #.
            credentials = split_credentials(url)
            try:
                parts = urlsplit(credentials.url if credentials is not None else url)
            except ValueError as exc:
                raise InvalidURL(f"invalid kafka URL {redact_url(url)!r}: {exc}") from None
            if parts.scheme.lower() != "kafka":
                raise InvalidURL(f"not a kafka URL: expected kafka://host:port, got scheme {parts.scheme!r}")
            if parts.netloc:
                values["brokers"] = unquote(parts.netloc)
            if credentials is not None and credentials.user:
                config["sasl.username"] = unquote(credentials.user)
            if credentials is not None and credentials.password:
                config["sasl.password"] = unquote(credentials.password)
            for key, value in parse_qsl(parts.query, keep_blank_values=True):
                values[key] = value
        for key, value in options.items():
            if key == "config":
                if not isinstance(value, Mapping):
                    raise ConfigurationError("kafka option config must be a dict of librdkafka settings")
                config.update({str(k): str(v) for k, v in value.items()})
            elif key in ("brokers", "bootstrap_servers", "bootstrap.servers"):
                values["brokers"] = value
            else:
                values[key] = value
        own: dict[str, Any] = {}
        topic_values: dict[str, Any] = {}
        for key, value in values.items():
            if key == "brokers":
                own["brokers"] = _parse_brokers(value)
            elif is_topic_key(key):
                topic_values[key] = value
            elif "." in key or key in DOTLESS_LIBRDKAFKA:
                config[key] = value if isinstance(value, str) else str(value).lower()
            elif key in _CONVERTERS:
                own[key] = _CONVERTERS[key](value)
            else:
                topic_keys = ["topic_config.<config>", "queue[<queue>].<setting>"]
                known = ", ".join(sorted([*_CONVERTERS, "brokers", "config", *topic_keys]))
                raise ConfigurationError(
                    f"unknown kafka setting {key!r}; the driver's settings are {known}, "
                    "and librdkafka settings contain a dot (session.timeout.ms)"
                )
        if "brokers" not in own:
            raise ConfigurationError(
                "the kafka driver needs brokers: kafka://host:9092 or brokers='host:9092'"
            )
        for reserved in ("enable.auto.commit", "enable.auto.offset.store", "group.id"):
            if reserved in config:
                raise ConfigurationError(
                    f"librdkafka setting {reserved} is managed by the kafka driver"
                    + ("; use group_id" if reserved == "group.id" else "")
                )
        own.update(parse_topic_settings(topic_values))
        settings = cls(config=config, **own)
        for queue in {"all queues", *settings.queue_topics}:
            spec = settings.topic_spec(queue)
            check_replicas(spec.replication_factor, spec.config, f"the topic of {queue}")
        return settings


def _secret_options(options: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The secret settings among the dict-form options (and their ``config``)."""
    found = [(str(k), v) for k, v in options.items() if k != "config" and is_secret_key(str(k))]
    config = options.get("config")
    if isinstance(config, Mapping):
        found += [(str(k), v) for k, v in config.items() if is_secret_key(str(k))]
    return found


def _group(value: object) -> str:
    text = str(value)
    if not text or len(text) > 200 or any(c.isspace() for c in text):
        raise ConfigurationError(f"invalid kafka group_id {value!r}: 1-200 characters without spaces")
    return text


def _prefix(value: object) -> str:
    text = str(value)
    if not PREFIX_PATTERN.fullmatch(text):
        raise InvalidName(
            f"invalid kafka topic_prefix {value!r}: up to 100 characters of letters, digits, '.', '_' or '-'"
        )
    return text


def _compression(value: object) -> str:
    text = str(value).lower()
    if text not in COMPRESSIONS:
        raise ConfigurationError(f"kafka compression must be one of {', '.join(COMPRESSIONS)}, got {value!r}")
    return text


_CONVERTERS: dict[str, Any] = {
    "group_id": _group,
    "topic_prefix": _prefix,
    "compression": _compression,
    "partitions": lambda v: _as_int("partitions", v, 1),
    "replication_factor": lambda v: -1 if str(v) == "-1" else _as_int("replication_factor", v, 1),
    "delay_tiers": _parse_tiers,
    "timeout": lambda v: _as_float("timeout", v, 0.1),
    "max_in_flight": lambda v: _as_int("max_in_flight", v, 1),
    "rebalance_grace": lambda v: _as_float("rebalance_grace", v, 0.0),
    "commit_interval": lambda v: _as_float("commit_interval", v, 0.001),
    "reserve_min_wait": lambda v: _as_float("reserve_min_wait", v, 0.0),
    "join_timeout": lambda v: _as_float("join_timeout", v, 0.0),
    "grow_partitions": lambda v: as_bool("grow_partitions", v),
}
