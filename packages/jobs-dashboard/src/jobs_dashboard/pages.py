"""The dashboard's pages, each shown only when the driver has the capabilities it needs.

Like Rails' Mission Control, the dashboard reads everything through the
public driver contract and asks the driver what it supports: a driver
without a failed store has no "Failed jobs" page, one without
:attr:`~jobs_core.driver.Capability.RETRY_FAILED` shows no retry buttons.
A new page (job status and progress, batches, paused queues) is one more
:class:`Page` in :data:`PAGES` and one more view in :mod:`jobs_dashboard.views`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from jobs_core.driver import Capability, Driver


@dataclass(frozen=True)
class Page:
    """A page of the navigation: its path, its title, the capabilities it needs (all of them)."""

    path: str
    title: str
    requires: frozenset[Capability] = field(default_factory=frozenset)

    def available(self, driver: Driver) -> bool:
        """Whether ``driver`` has every capability the page needs."""
        return all(driver.supports(capability) for capability in self.requires)

    def missing(self, driver: Driver) -> list[Capability]:
        """The capabilities ``driver`` lacks for this page."""
        return [capability for capability in self.requires if not driver.supports(capability)]


#: Every page, in navigation order.
PAGES: tuple[Page, ...] = (
    Page("/queues", "Queues", frozenset({Capability.STATS})),
    Page("/failed", "Failed jobs", frozenset({Capability.FAILED_STORE})),
    Page("/schedules", "Schedules", frozenset({Capability.SCHEDULES})),
    Page("/batches", "Batches", frozenset({Capability.WORKFLOWS})),
    Page("/jobs/list", "Jobs", frozenset({Capability.JOB_LISTING})),
    Page("/jobs", "Look up a job", frozenset({Capability.STATUS})),
    Page("/workers", "Workers", frozenset({Capability.WORKERS})),
    Page("/driver", "Driver"),
)


def available_pages(driver: Driver, pages: Iterable[Page] = PAGES) -> list[Page]:
    """The pages ``driver`` can show, in navigation order."""
    return [page for page in pages if page.available(driver)]
