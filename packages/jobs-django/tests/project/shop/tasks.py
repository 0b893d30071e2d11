"""The project's tasks, written as in Django's Tasks documentation."""

import asyncio

from django.db import transaction
from jobs_django import compat

from shop.models import Order

task = compat.tasks.task
TaskContext = compat.TaskContext


@task()
def calculate_meaning_of_life() -> int:
    return 42


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="emails")
def mark_done(order_id: int, note: str = "") -> str:
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order_id)
        order.done = True
        order.note = note
        order.save()
    return order.label


@task(takes_context=True)
def which_attempt(context: TaskContext, word: str) -> dict:
    return {"word": word, "attempt": context.attempt, "id": context.task_result.id}


@task()
async def slow_double(value: int) -> int:
    await asyncio.sleep(0.01)
    return value * 2


@task()
def explode() -> None:
    raise ValueError("the task broke")


@task()
def not_json() -> object:
    return object()


@task()
def record(label: str) -> int:
    """Write an order named ``label``: the order of the rows is the order the tasks ran in."""
    return Order.objects.create(label=label).pk


@task(takes_context=True)
def flaky(context: TaskContext) -> int:
    """Fail the first attempt, succeed the next: its return value is the attempt that succeeded."""
    if context.attempt == 1:
        raise ConnectionError("the first attempt always fails")
    return context.attempt
