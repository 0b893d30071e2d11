"""The per-partition bookkeeping that decides which offset is committed."""

from __future__ import annotations

from jobs_kafka.partitions import Fetched, PartitionState


def record(offset: int) -> Fetched:
    return Fetched("t", 0, offset, b"{}")


def test_the_commit_point_is_the_lowest_unfinished_offset() -> None:
    state = PartitionState("t", 0, generation=1)
    for offset in (10, 11, 12, 14):  # offsets may have gaps (compaction, control records)
        assert state.add(record(offset))
    assert state.commit_point() == 10
    state.finish(11)
    state.finish(14)
    assert state.commit_point() == 10
    state.finish(10)
    assert state.commit_point() == 12
    state.finish(12)
    assert state.commit_point() == 15
    assert state.in_flight == 0


def test_a_refetched_record_is_ignored() -> None:
    state = PartitionState("t", 0, generation=1)
    assert state.add(record(5))
    assert not state.add(record(5))
    assert not state.add(record(3))
    assert state.in_flight == 1


def test_expired_leases_come_back_first_in_offset_order() -> None:
    state = PartitionState("t", 0, generation=1)
    for offset in range(4):
        state.add(record(offset))
    first, second = state.pop_ready(), state.pop_ready()
    assert first is not None and second is not None
    state.lease(first, "a", 5.0)
    state.lease(second, "b", 50.0)
    assert state.expire(now=4.0) == 0
    assert state.expire(now=10.0) == 1
    assert state.expire(now=20.0) == 0
    assert [state.pop_ready(), state.pop_ready()] == [first, record(2)]
    assert state.next_expiry() == 50.0


def test_a_lease_renewed_for_less_time_than_it_had_still_expires() -> None:
    state = PartitionState("t", 0, generation=1)
    state.add(record(0))
    first = state.pop_ready()
    assert first is not None
    state.lease(first, "a", 50.0)
    assert state.expire(now=10.0) == 0
    state.renew(state.leases[0], 12.0)
    assert state.expire(now=11.0) == 0
    assert state.expire(now=13.0) == 1
    assert state.pop_ready() == first
