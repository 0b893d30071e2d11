"""The pages and actions of the dashboard, over one :class:`~jobs_core.JobsApp`.

Pages are plain ``GET`` handlers (run in a thread: driver calls block);
actions are ``POST`` handlers behind :func:`~jobs_dashboard.security.csrf_protected`
that do one thing and redirect back with a notice (Post/Redirect/Get), so
they work without JavaScript. Every value shown goes through the template's
HTML escaping; the backend's URL is shown redacted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment
from jobs_core import workflows
from jobs_core.app import JobsApp
from jobs_core.driver import Capability
from jobs_core.errors import (
    ConfigurationError,
    JobNotFound,
    JobsError,
    ScheduleNotFound,
    UnsupportedOperation,
    WorkflowNotFound,
)
from jobs_core.message import FailedJob, QueueStats
from jobs_core.status import DELAYED, FINISHED_STATES, QUEUED, RUNNING, STATES, WAITING, JobStatus
from jobs_core.urls import redact_text
from jobs_core.workflow_state import BATCH, CHAIN
from jobs_core.workflows import WorkflowStatus
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from jobs_dashboard import __version__
from jobs_dashboard.chart import line_chart, sparkline
from jobs_dashboard.pages import PAGES, Page, available_pages
from jobs_dashboard.sampler import Sampler
from jobs_dashboard.security import (
    AUTH_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    Guard,
    root_of,
    route_path,
    session_of,
)
from jobs_dashboard.settings import DashboardSettings

log = logging.getLogger("jobs_dashboard")

#: Failed jobs per page.
PAGE_SIZE = 50
#: How many of the newest failed jobs a search looks through.
SEARCH_SCAN = 5000
#: Longest payload text shown in a table cell (the job's own page shows all of it).
PREVIEW = 160

#: The notices an action may redirect with (only these texts are ever shown).
NOTICES: Mapping[str, str] = {
    "retried": "Retried {count} failed job(s): back on their queues.",
    "retry-missing": "That failed job is gone (retried or deleted already).",
    "deleted": "Deleted {count} failed job(s).",
    "purged": "Removed {count} waiting job(s) from the queue.",
    "paused": "Paused the schedule.",
    "resumed": "Resumed the schedule.",
    "removed": "Removed the schedule.",
    "schedule-missing": "There is no such schedule.",
    "signed-out": "Signed out.",
    "bad-token": "That is not the dashboard's token.",
    "queue-paused": "Paused the queue: workers start none of its jobs until it is resumed.",
    "queue-resumed": "Resumed the queue.",
    "batch-cancelled": "Cancelled the batch: its waiting jobs are removed.",
    "batch-finished": "That batch had already finished or was cancelled.",
    "chain-cancelled": "Cancelled the chain: no further link runs.",
    "chain-finished": "That chain had already finished or was cancelled.",
    "job-removed": "Cancelled the job: it was waiting, and is removed.",
    "job-requested": "Asked the job's worker to stop it: it ends as cancelled.",
    "job-finished": "That job had already finished: nothing changed.",
    "job-missing": "There is no such job.",
}


@dataclass(frozen=True)
class FailedRow:
    """A failed job as the table shows it."""

    entry: FailedJob
    payload_preview: str
    error_line: str
    failed_at: str


def _time(value: float | None) -> str:
    if value is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))


def _json(value: Any, indent: int | None = None) -> str:
    try:
        return json.dumps(value, indent=indent, ensure_ascii=False, sort_keys=indent is not None, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _first_line(text: str, limit: int = 120) -> str:
    line = (text or "").strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(frozen=True)
class JobRow:
    """A job as the jobs table shows it."""

    status: JobStatus
    #: Progress in percent (``None``: no total reported).
    percent: int | None
    #: The time that matters in its state: lease end, due time, or finish time.
    when: str
    #: A finished job's result (JSON) or the last line of its error, shortened.
    detail: str


def _job_row(status: JobStatus) -> JobRow:
    progress = status.progress
    percent = None if progress is None or progress.fraction is None else round(progress.fraction * 100)
    if status.state == RUNNING:
        when = _time(status.lease_expires_at)
    elif status.finished:
        when = _time(status.finished_at)
    else:
        when = _time(status.available_at)
    if status.error:
        detail = _first_line(status.error.strip().splitlines()[-1], PREVIEW)
    elif status.state == "succeeded":
        detail = _first_line(_json(status.result), PREVIEW)
    else:
        detail = ""
    return JobRow(status, percent, when, detail)


def _current_page(nav: list[Page], request_path: str) -> str:
    """The path of the navigation's page that ``request_path`` is in (the longest that holds it)."""
    holding = [
        page.path for page in nav if request_path == page.path or request_path.startswith(page.path + "/")
    ]
    return max(holding, key=len, default="")


def _matches(entry: FailedJob, needle: str) -> bool:
    haystack = " ".join(
        (entry.id, entry.name or "", entry.queue, entry.error or "", _json(entry.payload), entry.raw or "")
    )
    return needle in haystack.lower()


class Views:
    """The handlers of :func:`~jobs_dashboard.app.create_app`, sharing one app, guard and sampler."""

    def __init__(
        self,
        jobs: JobsApp,
        settings: DashboardSettings,
        guard: Guard,
        sampler: Sampler,
        templates: Environment,
        *,
        pages: tuple[Page, ...] = PAGES,
        sample: bool = True,
    ) -> None:
        self.jobs = jobs
        self.settings = settings
        self.guard = guard
        self.sampler = sampler
        self.templates = templates
        self.pages = pages
        self.sample = sample

    # -- helpers -------------------------------------------------------------

    @property
    def display_url(self) -> str:
        """The backend's URL with its secrets hidden."""
        return self.jobs.config.display_url

    def supports(self, capability: Capability) -> bool:
        """Whether the driver has ``capability``."""
        return self.jobs.driver.supports(capability)

    def require(self, capability: Capability) -> None:
        """404 unless the driver has ``capability``."""
        if not self.supports(capability):
            raise HTTPException(404, f"the {self.jobs.driver.name} driver has no {capability.value}")

    def redact(self, text: str) -> str:
        """``text`` with the backend URL's secrets hidden (for error messages)."""
        return redact_text(text, self.jobs.config.url)

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        """The page ``template`` with the common context (navigation, driver, CSRF token, notice)."""
        session = session_of(request)
        notice_key = request.query_params.get("notice", "")
        count = request.query_params.get("count", "")
        notice = NOTICES.get(notice_key, "").format(count=int(count) if count.isdigit() else 0)
        request_path = route_path(request.scope)
        nav = available_pages(self.jobs.driver, self.pages)
        html = self.templates.get_template(template).render(
            request_path=request_path,
            current_path=_current_page(nav, request_path),
            root=root_of(request.scope),
            nav=nav,
            driver_name=self.jobs.driver.name,
            display_url=self.display_url,
            csrf_field=CSRF_FIELD,
            csrf_token=self.guard.csrf_token(session),
            notice=notice,
            signed_in_by_token=bool(self.settings.token) and self.guard.signed_in(request),
            version=__version__,
            Capability=Capability,
            supports=self.supports,
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    @staticmethod
    def back(request: Request, path: str, **query: object) -> RedirectResponse:
        """A 303 redirect to ``path`` (below the dashboard's root) with ``query``."""
        shown = {k: str(v) for k, v in query.items() if v not in (None, "")}
        target = root_of(request.scope) + path
        return RedirectResponse(f"{target}?{urlencode(shown)}" if shown else target, status_code=303)

    def exception_handlers(self) -> dict[Any, Callable[..., Any]]:
        """Errors shown as a page: a driver error says what failed, never with a traceback."""

        async def jobs_error(request: Request, exc: Exception) -> Response:
            if isinstance(exc, UnsupportedOperation):
                status = 404
            elif isinstance(exc, ConfigurationError):
                status = 400  # a bad queue name, say: the request's fault
            else:
                status = 503
            message = self.redact(" ".join(str(exc).split()))
            log.warning("dashboard request %s failed: %s", request.url.path, message)
            return await run_in_threadpool(
                self.render, request, "error.html", status, title="Error", message=message
            )

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            if exc.status_code == 405 or "session" not in request.scope.get("state", {}):
                return PlainTextResponse(str(exc.detail), status_code=exc.status_code)
            return await run_in_threadpool(
                self.render, request, "error.html", exc.status_code, title="Error", message=str(exc.detail)
            )

        return {JobsError: jobs_error, HTTPException: http_error}

    # -- sign-in ---------------------------------------------------------------

    def home(self, request: Request) -> Response:
        """The first page the driver can show."""
        pages = available_pages(self.jobs.driver, self.pages)
        first = pages[0].path if pages else "/driver"
        return RedirectResponse(root_of(request.scope) + first, status_code=303)

    def login_page(self, request: Request) -> Response:
        """The token form (only when a token is set)."""
        if not self.settings.token:
            return RedirectResponse(root_of(request.scope) + "/", status_code=303)
        return self.render(request, "login.html", title="Sign in")

    async def login(self, request: Request, form: dict[str, str]) -> Response:
        """Check the token; on success set the sign-in cookie of this session."""
        if not self.guard.check_token(form.get("token", "")):
            return self.back(request, "/login", notice="bad-token")
        response = RedirectResponse(root_of(request.scope) + "/", status_code=303)
        session = request.cookies[SESSION_COOKIE]  # present: the CSRF check needs it
        response.set_cookie(
            AUTH_COOKIE,
            self.guard.auth_cookie(session),
            httponly=True,
            samesite="strict",
            path="/",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request, form: dict[str, str]) -> Response:
        """Forget the sign-in of this browser."""
        response = self.back(request, "/login", notice="signed-out")
        response.delete_cookie(AUTH_COOKIE, path="/")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- queues ----------------------------------------------------------------

    def _queue_context(self) -> dict[str, Any]:
        if self.sample:
            self.sampler.start()  # when the server did not run the lifespan (a mounted application)
        stats = self.jobs.queue.stats_by_queue()
        paused = set(self.jobs.paused_queues()) if self.supports(Capability.QUEUE_PAUSE) else set()
        for name in sorted(paused - set(stats)):
            stats[name] = QueueStats()  # paused before any job of it was dispatched
        total = QueueStats()
        for counts in stats.values():
            total = total + counts
        throughput = {name: self.sampler.rate(name) for name in stats}
        sparks = {
            name: sparkline(self.sampler.throughput(name), f"finished jobs per minute in {name}")
            for name in stats
        }
        completed = self.supports(Capability.COMPLETED_COUNT)
        charts = []
        if completed:
            charts.append(line_chart(self.sampler.throughput(), "finished jobs", "per minute"))
        charts.append(line_chart(self.sampler.waiting(), "waiting jobs"))
        return {
            "stats": stats,
            "paused": paused,
            "total": total,
            "throughput": throughput,
            "sparks": sparks,
            "completed_kept": completed,
            "charts": charts,
            "sample_interval": self.sampler.interval,
            "sample_error": self.redact(self.sampler.last_error) if self.sampler.last_error else None,
        }

    def queues(self, request: Request) -> Response:
        """Every queue's counts and the throughput chart."""
        self.require(Capability.STATS)
        return self.render(request, "queues.html", title="Queues", **self._queue_context())

    def queues_live(self, request: Request) -> Response:
        """The counts and charts alone (polled by the queues page)."""
        self.require(Capability.STATS)
        return self.render(request, "queues_live.html", **self._queue_context())

    async def purge(self, request: Request, form: dict[str, str]) -> Response:
        """Remove the waiting jobs of one queue."""
        self.require(Capability.PURGE)
        count = await run_in_threadpool(self.jobs.purge, form.get("queue", ""))
        return self.back(request, "/queues", notice="purged", count=count)

    async def pause_queue(self, request: Request, form: dict[str, str]) -> Response:
        """Pause or resume one queue for every worker."""
        self.require(Capability.QUEUE_PAUSE)
        queue, change = form.get("queue", ""), form.get("change", "")
        if change == "pause":
            await run_in_threadpool(self.jobs.pause_queue, queue)
            return self.back(request, "/queues", notice="queue-paused")
        if change == "resume":
            await run_in_threadpool(self.jobs.resume_queue, queue)
            return self.back(request, "/queues", notice="queue-resumed")
        raise HTTPException(400, f"unknown change {change!r}: pause or resume")

    # -- failed jobs -----------------------------------------------------------

    def _queue_names(self) -> list[str]:
        if not self.supports(Capability.STATS):
            return []
        try:
            return sorted(self.jobs.queue.queues())
        except UnsupportedOperation:
            return []

    def failed(self, request: Request) -> Response:
        """The failed store, newest first: filter by queue, search any text, retry, delete."""
        self.require(Capability.FAILED_STORE)
        params = request.query_params
        queue = params.get("queue") or None
        query = (params.get("q") or "").strip()
        offset = int(params["offset"]) if params.get("offset", "").isdigit() else 0
        scanned = 0
        if query:
            needle = query.lower()
            found: list[FailedJob] = []
            while scanned < SEARCH_SCAN:
                batch = self.jobs.failed_jobs(limit=500, offset=scanned, queue=queue)
                scanned += len(batch)
                found += [entry for entry in batch if _matches(entry, needle)]
                if len(batch) < 500:
                    break
            entries = found[offset : offset + PAGE_SIZE]
            more = len(found) > offset + PAGE_SIZE
            matched: int | None = len(found)
        else:
            entries = self.jobs.failed_jobs(limit=PAGE_SIZE + 1, offset=offset, queue=queue)
            more = len(entries) > PAGE_SIZE
            entries = entries[:PAGE_SIZE]
            matched = None
        rows = [
            FailedRow(
                entry=entry,
                payload_preview=_first_line(_json(entry.payload), PREVIEW),
                error_line=_first_line(entry.error),
                failed_at=_time(entry.failed_at),
            )
            for entry in entries
        ]
        filters = {"queue": queue or "", "q": query}
        return self.render(
            request,
            "failed.html",
            title="Failed jobs",
            rows=rows,
            queue=queue or "",
            query=query,
            queue_names=self._queue_names(),
            matched=matched,
            scanned=scanned,
            search_limit=SEARCH_SCAN,
            offset=offset,
            page_size=PAGE_SIZE,
            newer=urlencode({**filters, "offset": max(0, offset - PAGE_SIZE)}) if offset else None,
            older=urlencode({**filters, "offset": offset + PAGE_SIZE}) if more else None,
        )

    def failed_job(self, request: Request) -> Response:
        """One failed job: its whole payload, error and traceback."""
        self.require(Capability.FAILED_STORE)
        wanted = request.query_params.get("id", "")
        entry = self._find_failed(wanted)
        if entry is None:
            raise HTTPException(404, f"no failed job with id {wanted!r} (retried or deleted already?)")
        message = entry.message
        return self.render(
            request,
            "failed_job.html",
            title=f"Failed job {entry.id}",
            entry=entry,
            payload=_json(entry.payload, indent=2),
            failed_at=_time(entry.failed_at),
            created_at=_time(message.created_at) if message is not None else "-",
            max_retries=message.max_retries if message is not None else None,
            priority=message.priority if message is not None else None,
        )

    def _find_failed(self, wanted: str) -> FailedJob | None:
        scanned = 0
        while scanned < SEARCH_SCAN:
            batch = self.jobs.failed_jobs(limit=500, offset=scanned)
            for entry in batch:
                if entry.id == wanted:
                    return entry
            scanned += len(batch)
            if len(batch) < 500:
                return None
        return None

    @staticmethod
    def _filters(form: Mapping[str, str]) -> dict[str, str]:
        return {"queue": form.get("queue_filter", ""), "q": form.get("q", "")}

    async def retry(self, request: Request, form: dict[str, str]) -> Response:
        """Put one failed job back on its queue."""
        self.require(Capability.RETRY_FAILED)
        done = await run_in_threadpool(self.jobs.retry, form.get("id", ""))
        if not done:
            return self.back(request, "/failed", notice="retry-missing", **self._filters(form))
        return self.back(request, "/failed", notice="retried", count=1, **self._filters(form))

    async def retry_all(self, request: Request, form: dict[str, str]) -> Response:
        """Put every failed job (of one queue, if given) back on its queue."""
        self.require(Capability.RETRY_FAILED)
        queue = form.get("queue") or None
        count = await run_in_threadpool(self.jobs.queue.retry_all, queue)
        return self.back(request, "/failed", notice="retried", count=count, queue=queue or "")

    async def delete(self, request: Request, form: dict[str, str]) -> Response:
        """Delete one failed job for good."""
        self.require(Capability.FAILED_STORE)
        done = await run_in_threadpool(self.jobs.queue.forget, form.get("id", ""))
        if not done:
            return self.back(request, "/failed", notice="retry-missing", **self._filters(form))
        return self.back(request, "/failed", notice="deleted", count=1, **self._filters(form))

    # -- schedules ---------------------------------------------------------------

    def schedules(self, request: Request) -> Response:
        """The stored schedules, with pause, resume and remove."""
        self.require(Capability.SCHEDULES)
        found = self.jobs.schedules()
        rows = [
            {
                "schedule": schedule,
                "payload": _first_line(_json(schedule.payload), PREVIEW),
                "next_run": _time(schedule.next_run_at),
                "last_run": _time(schedule.last_run_at),
            }
            for schedule in found
        ]
        return self.render(request, "schedules.html", title="Schedules", rows=rows)

    async def change_schedule(self, request: Request, form: dict[str, str]) -> Response:
        """Pause, resume or remove one schedule."""
        self.require(Capability.SCHEDULES)
        name, change = form.get("name", ""), form.get("change", "")
        try:
            if change == "pause":
                await run_in_threadpool(self.jobs.pause_schedule, name)
                notice = "paused"
            elif change == "resume":
                await run_in_threadpool(self.jobs.resume_schedule, name)
                notice = "resumed"
            elif change == "remove":
                removed = await run_in_threadpool(self.jobs.remove_schedule, name)
                notice = "removed" if removed else "schedule-missing"
            else:
                raise HTTPException(400, f"unknown change {change!r}: pause, resume or remove")
        except ScheduleNotFound:
            notice = "schedule-missing"
        return self.back(request, "/schedules", notice=notice)

    # -- batches and chains ------------------------------------------------------

    def batches(self, request: Request) -> Response:
        """The newest batches and chains, with their progress."""
        self.require(Capability.WORKFLOWS)
        params = request.query_params
        kind = params.get("kind") if params.get("kind") in (BATCH, CHAIN) else None
        offset = int(params["offset"]) if params.get("offset", "").isdigit() else 0
        # Without a kind, the page of records may hold dependent jobs too (kind "job"), left out:
        # a page can show fewer rows than PAGE_SIZE, but paging still reaches every record.
        found = workflows.listing(self.jobs, kind, PAGE_SIZE + 1, offset)
        more = len(found) > PAGE_SIZE
        found = [status for status in found[:PAGE_SIZE] if status.kind in (BATCH, CHAIN)]
        filters = {"kind": kind or ""}
        return self.render(
            request,
            "batches.html",
            title="Batches",
            rows=[(status, _time(status.created_at)) for status in found],
            kind=kind or "",
            newer=urlencode({**filters, "offset": max(0, offset - PAGE_SIZE)}) if offset else None,
            older=urlencode({**filters, "offset": offset + PAGE_SIZE}) if more else None,
        )

    def batch_detail(self, request: Request) -> Response:
        """One batch or chain: its counts and the ids of its failed jobs."""
        self.require(Capability.WORKFLOWS)
        wanted = request.query_params.get("id", "")
        record = self.jobs.driver.workflow(wanted) if wanted else None
        if record is None:
            raise HTTPException(404, f"no batch or chain with id {wanted!r}")
        status = WorkflowStatus.of(record)
        return self.render(
            request,
            "batch.html",
            title=f"{status.kind.capitalize()} {status.id}",
            wf=status,
            created_at=_time(status.created_at),
            finished_at=_time(status.finished_at),
        )

    async def cancel_batch(self, request: Request, form: dict[str, str]) -> Response:
        """Cancel a running batch (its waiting jobs are removed) or chain (no further link runs)."""
        self.require(Capability.WORKFLOWS)
        batch_id = form.get("id", "")
        record = await run_in_threadpool(self.jobs.driver.workflow, batch_id) if batch_id else None
        if record is None or record.kind not in ("batch", "chain"):
            raise HTTPException(404, f"no batch or chain with id {batch_id!r}")
        cancel = workflows.cancel_chain if record.kind == "chain" else workflows.cancel_batch
        try:
            done = await run_in_threadpool(cancel, self.jobs, batch_id)
        except WorkflowNotFound:
            raise HTTPException(404, f"no {record.kind} with id {batch_id!r}") from None
        notice = f"{record.kind}-cancelled" if done else f"{record.kind}-finished"
        return self.back(request, "/batches/detail", id=batch_id, notice=notice)

    # -- job status ----------------------------------------------------------------

    def job_lookup(self, request: Request) -> Response:
        """A form asking for a job id; with ``?id=``, that job's status."""
        self.require(Capability.STATUS)
        wanted = (request.query_params.get("id") or "").strip()
        status: JobStatus | None = None
        if wanted:
            try:
                status = self.jobs.status(wanted)
            except JobNotFound as exc:
                return self.render(
                    request,
                    "job.html",
                    404,
                    title="Job not found",
                    wanted=wanted,
                    status=None,
                    missing=" ".join(str(exc).split()),
                )
        progress = status.progress if status is not None else None
        return self.render(
            request,
            "job.html",
            title=f"Job {wanted}" if wanted else "Look up a job",
            wanted=wanted,
            status=status,
            missing=None,
            result=_json(status.result, indent=2) if status is not None else "",
            percent=None if progress is None or progress.fraction is None else round(progress.fraction * 100),
            available_at=_time(status.available_at) if status is not None else "-",
            lease_expires_at=_time(status.lease_expires_at) if status is not None else "-",
            finished_at=_time(status.finished_at) if status is not None else "-",
            cancellable=status is not None
            and status.state in (QUEUED, DELAYED, RUNNING, WAITING)
            and not status.cancel_requested
            and self.supports(Capability.CANCEL),
        )

    async def cancel_job(self, request: Request, form: dict[str, str]) -> Response:
        """Cancel one job: removed if waiting, stopped by its worker if running."""
        self.require(Capability.CANCEL)
        job_id = form.get("id", "").strip()
        try:
            outcome = await run_in_threadpool(self.jobs.cancel, job_id)
        except JobNotFound:
            return self.back(request, "/jobs", id=job_id, notice="job-missing")
        return self.back(request, "/jobs", id=job_id, notice=f"job-{outcome}")

    # -- jobs by state and workers ---------------------------------------------------

    def _jobs_context(self, request: Request) -> dict[str, Any]:
        params = request.query_params
        state = params.get("state") or RUNNING
        if state not in (*STATES, FINISHED_STATES):
            raise HTTPException(400, f"unknown state {state!r}")
        queue = (params.get("queue") or "").strip() or None
        offset = int(params["offset"]) if params.get("offset", "").isdigit() else 0
        found = self.jobs.jobs(state, queue, PAGE_SIZE + 1, offset)
        more = len(found) > PAGE_SIZE
        rows = [_job_row(status) for status in found[:PAGE_SIZE]]
        filters = {"state": state, "queue": queue or ""}
        return {
            "rows": rows,
            "state": state,
            "states": [*STATES, FINISHED_STATES],
            "queue": queue or "",
            "queues": self._queue_names(),
            "live_query": urlencode({**filters, "offset": offset}),
            "newer": urlencode({**filters, "offset": max(0, offset - PAGE_SIZE)}) if offset else None,
            "older": urlencode({**filters, "offset": offset + PAGE_SIZE}) if more else None,
        }

    def jobs_list(self, request: Request) -> Response:
        """Jobs in one state (running by default, with progress bars), filtered by queue; refreshed live."""
        self.require(Capability.JOB_LISTING)
        return self.render(request, "jobs_list.html", title="Jobs", **self._jobs_context(request))

    def jobs_list_live(self, request: Request) -> Response:
        """The table of :meth:`jobs_list` alone (polled by that page)."""
        self.require(Capability.JOB_LISTING)
        return self.render(request, "jobs_table.html", **self._jobs_context(request))

    def workers(self, request: Request) -> Response:
        """The workers seen recently: host, pid, queues, concurrency, jobs done and failed."""
        self.require(Capability.WORKERS)
        now = time.time()
        rows = [
            (record, _time(record.started_at), f"{max(0.0, now - record.last_seen):.0f} s ago")
            for record in self.jobs.workers()
        ]
        return self.render(request, "workers.html", title="Workers", rows=rows)

    # -- driver ------------------------------------------------------------------

    def driver(self, request: Request) -> Response:
        """What the driver supports, and which pages and actions that leaves out."""
        driver = self.jobs.driver
        capabilities = [(c, driver.supports(c)) for c in Capability]
        hidden = [(page, page.missing(driver)) for page in self.pages if not page.available(driver)]
        return self.render(
            request,
            "driver.html",
            title="Driver",
            capabilities=capabilities,
            hidden=hidden,
            driver_version=driver.version,
        )
