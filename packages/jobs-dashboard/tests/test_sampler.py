"""The throughput sampler's arithmetic, on counts given by hand."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from jobs_core import QueueStats
from jobs_dashboard.chart import line_chart, sparkline
from jobs_dashboard.sampler import Point, Sampler


class Script:
    """Counts and times handed to the sampler one read at a time."""

    def __init__(self, reads: list[tuple[float, Mapping[str, QueueStats]]]) -> None:
        self.reads = reads
        self.now = 0.0

    def read(self) -> Mapping[str, QueueStats]:
        self.now, counts = self.reads.pop(0)
        return counts

    def clock(self) -> float:
        return self.now


def sampled(reads: list[tuple[float, Mapping[str, QueueStats]]], keep: int = 10) -> Sampler:
    script = Script(reads)
    sampler = Sampler(script.read, interval=5, keep=keep, clock=script.clock)
    for _ in range(len(script.reads)):
        sampler.sample()
    return sampler


def test_throughput_is_finished_jobs_per_minute_between_samples() -> None:
    sampler = sampled(
        [
            (0, {"a": QueueStats(pending=9, completed=10, failed=0), "b": QueueStats(completed=0)}),
            (10, {"a": QueueStats(pending=3, completed=15, failed=1), "b": QueueStats(completed=4)}),
            (20, {"a": QueueStats(pending=0, completed=15, failed=0), "b": QueueStats(completed=4)}),
        ]
    )
    assert [p.value for p in sampler.throughput("a")] == [36.0, 0.0]  # a retried failure is not negative
    assert [p.value for p in sampler.throughput()] == [60.0, 0.0]
    assert [p.value for p in sampler.waiting("a")] == [9.0, 3.0, 0.0]
    assert sampler.rate("a") == pytest.approx((15 - 10) * 60 / 20)
    assert sampler.rate("a", window=10) == pytest.approx(0.0)
    assert sampler.rate("missing") == 0.0


def test_no_throughput_without_a_completed_count() -> None:
    sampler = sampled([(0, {"a": QueueStats(completed=None)}), (5, {"a": QueueStats(completed=None)})])
    assert [p.value for p in sampler.throughput()] == [None]
    assert sampler.rate("a") is None
    assert [p.value for p in sampler.waiting()] == [0.0, 0.0]


def test_only_the_latest_samples_are_kept_and_a_failed_read_is_reported() -> None:
    reads = [(float(t), {"a": QueueStats(completed=t)}) for t in range(5)]
    sampler = sampled(reads, keep=3)
    assert [s.at for s in sampler.samples()] == [2.0, 3.0, 4.0]

    def broken() -> Mapping[str, QueueStats]:
        raise ConnectionError("database went away")

    failing = Sampler(broken)
    assert failing.sample() is None
    assert failing.last_error == "ConnectionError: database went away"
    assert failing.rate() is None


def test_the_chart_escapes_its_label_and_breaks_on_unknown_values() -> None:
    svg = line_chart(
        [Point(0, 1.0), Point(1, 2.0), Point(2, None), Point(3, 4.0), Point(4, 1.0)], "<b>jobs</b>"
    )
    assert "&lt;b&gt;jobs&lt;/b&gt;" in svg and "<b>" not in svg
    assert svg.count("<polyline") == 2
    assert "waiting for samples" in line_chart([Point(0, 1.0)], "jobs")


def test_the_sparkline_escapes_its_label() -> None:
    svg = sparkline([Point(0, 0.0), Point(1, 3.0)], "queue <x>")
    assert "queue &lt;x&gt;" in svg and "<polyline" in svg
    assert "<polyline" not in sparkline([Point(0, None), Point(1, 3.0)], "q")
