"""A task in a module that is neither tasks.py nor jobs.py: a worker runs it only when told to import it."""

from jobs_django import compat


@compat.tasks.task()
def unlisted() -> str:
    return "ran"
