"""What the database driver's mixins (status, listing, admin, flow) call on the driver.

:class:`DriverParts` declares, once, the attributes and methods of
:class:`~jobs_database.driver.DatabaseDriver` that the mixins use; the
driver defines them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from jobs_core.message import Message

from jobs_database.schema import Tables

__all__ = ["DriverParts"]

T = TypeVar("T")


class DriverParts:
    """The driver's attributes and methods the mixins use (defined by the driver)."""

    tables: Tables
    backend: str

    def _run(  # noqa: PLR0917 (the driver's signature)
        self,
        operation: str,
        fn: Callable[[sa.Connection], T],
        retry: bool = True,
        autocommit: bool = False,
        relaxed: bool = False,
        after_commit: Callable[[sa.Connection], None] | None = None,
    ) -> T:
        raise NotImplementedError

    def _flow_message(self, conn: sa.Connection, message: Message) -> Message | None:
        raise NotImplementedError

    def _slots_delete(self, slots: Sequence[tuple[str, str]]) -> sa.Delete:
        raise NotImplementedError

    def release_slots(self, slots: Sequence[tuple[str, str]]) -> None:  # noqa: D102 (the driver's)
        raise NotImplementedError

    def _cancel_in_workflow(
        self, conn: sa.Connection, messages: Message | Sequence[Message], store_of: list[Any]
    ) -> None:
        raise NotImplementedError

    def _after_cancel_in_workflow(self, store_of: list[Any]) -> Callable[[sa.Connection], None] | None:
        raise NotImplementedError

    def _notify_after_workflow(self, store_of: list[Any]) -> None:
        raise NotImplementedError
