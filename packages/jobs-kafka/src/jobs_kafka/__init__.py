"""jobs-kafka: the Apache Kafka driver for jobs.

Install it next to ``jobs-core`` and configure ``kafka://host:9092?group_id=app``
(or ``driver="kafka", brokers=...``). The driver registers itself through the
``jobs.drivers`` entry point; nothing needs importing.
"""

from __future__ import annotations

from collections.abc import Callable

from jobs_core import Driver, hookimpl

from jobs_kafka.driver import KafkaDriver
from jobs_kafka.settings import KafkaSettings

__version__ = "0.1.0"

__all__ = ["KafkaDriver", "KafkaSettings", "__version__", "jobs_register_drivers"]


@hookimpl
def jobs_register_drivers(register: Callable[[type[Driver]], None]) -> None:
    """Register the ``kafka`` driver."""
    register(KafkaDriver)
