"""Django tasks enqueued through Django's API, run by real jobs workers, read back with get_result()."""

from __future__ import annotations

import asyncio
import pathlib
import threading
from datetime import timedelta

import pytest
from conftest import run_worker
from django.db import transaction
from django.utils import timezone
from jobs_django import compat
from shop import tasks
from shop.models import Order

Status = compat.TaskResultStatus


def test_tasks_run_on_the_worker_and_their_results_read_back(project: pathlib.Path) -> None:
    order = Order.objects.create(label="order-1")
    meaning = tasks.calculate_meaning_of_life.enqueue()
    added = tasks.add.enqueue(2, b=3)
    context = tasks.which_attempt.enqueue("hi")
    doubled = asyncio.run(tasks.slow_double.aenqueue(21))
    marked = tasks.mark_done.enqueue(order.pk, note="shipped")
    broken = tasks.explode.enqueue()
    odd = tasks.not_json.enqueue()
    for result in (meaning, added, context, doubled, marked, broken, odd):
        assert result.status == Status.READY
        assert result.backend == "default"
        assert result.enqueued_at is not None
    assert added.args == [2] and added.kwargs == {"b": 3}
    # Read back as another request would: a waiting task's arguments come from its job.
    waiting = tasks.add.get_result(added.id)
    assert (waiting.status, waiting.args, waiting.kwargs) == (Status.READY, [2], {"b": 3})

    run_worker("--queue", "default", "--queue", "emails")

    for result in (meaning, added, context, doubled, marked, broken, odd):
        result.refresh()
        assert result.is_finished
        assert result.attempts == 1
        assert result.finished_at is not None
    assert meaning.return_value == 42
    assert added.return_value == 5
    assert doubled.return_value == 42
    assert context.return_value == {"word": "hi", "attempt": 1, "id": context.id}
    assert marked.return_value == "order-1"
    order.refresh_from_db()
    assert order.done and order.note == "shipped"  # the task wrote through Django's ORM

    assert broken.status == Status.FAILED
    assert broken.errors[0].exception_class is ValueError
    assert "the task broke" in broken.errors[0].traceback
    with pytest.raises(ValueError, match="Task failed"):
        broken.return_value  # noqa: B018
    assert odd.status == Status.FAILED  # its return value is not JSON
    assert odd.errors[0].exception_class is TypeError

    # get_result from the task, or from the backend for any task, as another request would.
    again = tasks.add.get_result(added.id)
    assert again.status == Status.SUCCESSFUL and again.return_value == 5
    assert again.enqueued_at == added.enqueued_at
    assert again.args == [] and again.kwargs == {}  # a kept result holds the return value only
    assert added.args == [2] and added.kwargs == {"b": 3}  # refresh() kept them
    assert compat.tasks.default_task_backend.get_result(meaning.id).return_value == 42
    assert asyncio.run(tasks.add.aget_result(added.id)).return_value == 5
    with pytest.raises(compat.exceptions.TaskResultMismatch):
        tasks.explode.get_result(added.id)
    with pytest.raises(compat.TaskResultDoesNotExist):
        tasks.add.get_result("0" * 32)


def test_priority_queue_and_run_after_are_the_jobs(project: pathlib.Path) -> None:
    Order.objects.filter(label__startswith="p-").delete()
    low = tasks.record.using(priority=-10).enqueue("p-low")
    default = tasks.record.enqueue("p-default")
    high = tasks.record.using(priority=100).enqueue("p-high")
    later = tasks.record.using(run_after=timezone.now() + timedelta(hours=1)).enqueue("p-later")
    special = tasks.record.using(queue_name="special").enqueue("p-special")
    backend = compat.tasks.default_task_backend
    assert backend.app.status(special.id).queue == "special"
    assert backend.app.status(later.id).state == "delayed"
    assert tasks.record.get_result(later.id).args == ["p-later"]

    # The jobs CLI itself, with the Django plugin, serving one queue.
    run_worker("--queue", "default", "--concurrency", "1", command="jobs")

    ran = list(Order.objects.filter(label__startswith="p-").order_by("pk").values_list("label", flat=True))
    assert ran == ["p-high", "p-default", "p-low"]
    for result in (low, default, high):
        result.refresh()
        assert result.status == Status.SUCCESSFUL
    for result in (later, special):
        result.refresh()
        assert result.status == Status.READY  # delayed an hour; a queue the worker did not serve
    assert backend.app.cancel(later.id) == "removed"
    assert backend.app.cancel(special.id) == "removed"


def test_a_rollback_leaves_no_job_and_a_commit_stores_it_with_the_rows(project: pathlib.Path) -> None:
    backend = compat.tasks.default_task_backend
    pending = backend.app.stats("default")["pending"]
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.create(label="rolled-back")
        lost = tasks.add.enqueue(1, 1)
        raise RuntimeError("the view failed")
    assert not Order.objects.filter(label="rolled-back").exists()
    with pytest.raises(compat.TaskResultDoesNotExist):
        tasks.add.get_result(lost.id)
    assert backend.app.stats("default")["pending"] == pending

    with transaction.atomic():
        Order.objects.create(label="committed")
        kept = tasks.add.enqueue(2, 2)
        # Not on_commit, nor already committed: the job is in this open transaction,
        # which another connection does not see yet.
        assert _jobs_rows_seen_by_another_connection(kept.id) == 0
        assert _jobs_rows_seen_by_another_connection(lost.id) == 0
    assert _jobs_rows_seen_by_another_connection(kept.id) == 1
    assert backend.app.status(kept.id).state == "queued"
    run_worker()
    kept.refresh()
    assert kept.return_value == 4


def test_a_backend_with_max_retries_retries_a_task_that_raised(project: pathlib.Path) -> None:
    once = tasks.flaky.enqueue()  # the default backend: no retries, as Django's own backends
    twice = tasks.flaky.using(backend="retrying").enqueue()
    assert twice.backend == "retrying"

    run_worker("--queue", "default", until="--max-jobs 3")  # 1 failure, then 1 failure + its retry

    once.refresh()
    assert once.status == Status.FAILED and once.attempts == 1
    assert once.errors[0].exception_class is ConnectionError
    twice.refresh()
    assert twice.status == Status.SUCCESSFUL
    assert twice.return_value == 2  # the second attempt's context said so
    assert twice.attempts == 2


def test_a_worker_never_imports_the_module_a_stored_job_names(project: pathlib.Path) -> None:
    from shop.unlisted import unlisted

    unknown = unlisted.enqueue()
    run_worker("--queue", "default")  # imports the apps' tasks.py and jobs.py only
    unknown.refresh()
    assert unknown.status == Status.FAILED
    assert "not registered" in unknown.errors[0].traceback

    named = unlisted.enqueue()
    run_worker("--queue", "default", "--import", "shop.unlisted")  # the operator names it
    named.refresh()
    assert named.return_value == "ran"


def _jobs_rows_seen_by_another_connection(job_id: str) -> int:
    """Rows of the job ``job_id`` in the jobs table, read on a connection of another thread."""
    seen: list[int] = []

    def count() -> None:
        from django.db import connection

        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM djangotest_jobs WHERE id = %s", [job_id])
                seen.append(cursor.fetchone()[0])
        finally:
            connection.close()

    thread = threading.Thread(target=count)
    thread.start()
    thread.join(60)
    return seen[0]


def test_unknown_queue_and_bad_arguments_are_refused_at_enqueue(project: pathlib.Path) -> None:
    with pytest.raises(compat.InvalidTask, match="nowhere"):
        tasks.add.using(queue_name="nowhere")
    with pytest.raises((TypeError, ValueError)):
        tasks.add.enqueue(object(), 1)
    with pytest.raises(compat.InvalidTask, match="priority"):
        tasks.add.using(priority=101)
