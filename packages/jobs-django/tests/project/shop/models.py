"""The test project's one model: orders, written by views and by tasks."""

from django.db import models


class Order(models.Model):
    """An order; tasks mark it done."""

    label = models.CharField(max_length=100)
    done = models.BooleanField(default=False)
    note = models.CharField(max_length=100, blank=True, default="")
