"""Jobs of the shop app, written with jobs' own API; the worker finds this module as it finds tasks.py."""

from jobs_core import job

from shop.models import Order


@job(queue="emails")
def stamp(payload: dict) -> int:
    """Write an order named ``payload["label"]``; return its id."""
    return Order.objects.create(label=payload["label"]).pk
