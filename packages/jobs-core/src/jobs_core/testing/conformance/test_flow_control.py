"""Flow control: pause flags, rate-limit windows and concurrency slots held in the backend.

Each test that checks atomicity runs several reservers at once, each on its
own driver instance (its own connections: to the backend they are separate
clients, as separate processes would be). Times are read from the callers'
clocks, which here are one clock; the contract's assumption about clocks
that disagree is stated in :mod:`jobs_core.driver`.
"""

from __future__ import annotations

import threading
import time

import pytest

from jobs_core.driver import Capability, Driver
from jobs_core.errors import InvalidName
from jobs_core.flow_state import TENANT_HEADER
from jobs_core.testing.conformance._helpers import (
    assert_nothing,
    delivery_timeout,
    enqueue_one,
    message,
    messages,
    reserve_one,
    reserve_until,
)
from jobs_core.testing.plugin import DriverFactory, QueueFactory

# -- QUEUE_PAUSE ---------------------------------------------------------------------


@pytest.mark.jobs_requires(Capability.QUEUE_PAUSE)
def test_a_paused_queue_is_listed_by_every_driver_until_resumed(
    jobs_driver_factory: DriverFactory, jobs_queue: str
) -> None:
    one, other = jobs_driver_factory(), jobs_driver_factory()
    assert jobs_queue not in other.paused_queues()
    assert one.pause_queue(jobs_queue) is True
    assert one.pause_queue(jobs_queue) is False  # already paused
    assert jobs_queue in other.paused_queues()
    assert other.resume_queue(jobs_queue) is True
    assert other.resume_queue(jobs_queue) is False
    assert jobs_queue not in one.paused_queues()


@pytest.mark.jobs_requires(Capability.QUEUE_PAUSE)
def test_paused_queues_are_sorted_and_pausing_leaves_messages_alone(
    jobs_driver: Driver, jobs_queue_factory: QueueFactory
) -> None:
    make = jobs_queue_factory
    names = sorted([make(), make(), make()])
    for name in reversed(names):
        jobs_driver.pause_queue(name)
    listed = [name for name in jobs_driver.paused_queues() if name in names]
    assert listed == names
    ident = enqueue_one(jobs_driver, message(names[0], "kept"))
    for name in names:
        jobs_driver.resume_queue(name)
    assert reserve_one(jobs_driver, names[0]).id == ident


@pytest.mark.jobs_requires(Capability.QUEUE_PAUSE)
def test_pausing_a_bad_queue_name_is_refused(jobs_driver: Driver) -> None:
    with pytest.raises(InvalidName):
        jobs_driver.pause_queue("no spaces allowed")
    with pytest.raises(InvalidName):
        jobs_driver.resume_queue("")


# -- RATE_LIMITS ---------------------------------------------------------------------


@pytest.mark.jobs_requires(Capability.RATE_LIMITS)
def test_a_window_grants_count_starts_then_says_how_long_to_wait(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    key = f"rate-{jobs_queue}"
    granted, wait, _ = jobs_driver.take_tokens(key, 5, 2.0, want=3)
    assert (granted, wait) == (3, 0.0)
    granted, wait, _ = jobs_driver.take_tokens(key, 5, 2.0, want=4)
    assert granted == 2
    assert 0 < wait <= 2.0
    granted, wait, _ = jobs_driver.take_tokens(key, 5, 2.0, want=1)
    assert granted == 0
    assert 0 < wait <= 2.0


@pytest.mark.jobs_requires(Capability.RATE_LIMITS)
def test_a_window_has_room_again_once_its_period_passed(jobs_driver: Driver, jobs_queue: str) -> None:
    key = f"rate-{jobs_queue}"
    assert jobs_driver.take_tokens(key, 2, 0.5, want=2)[:2] == (2, 0.0)
    granted, wait, _ = jobs_driver.take_tokens(key, 2, 0.5, want=1)
    assert granted == 0
    time.sleep(wait + 0.05)
    assert jobs_driver.take_tokens(key, 2, 0.5, want=2)[:2] == (2, 0.0)


@pytest.mark.jobs_requires(Capability.RATE_LIMITS)
def test_keys_have_separate_windows(jobs_driver: Driver, jobs_queue: str) -> None:
    assert jobs_driver.take_tokens(f"a-{jobs_queue}", 1, 60, want=1)[:2] == (1, 0.0)
    assert jobs_driver.take_tokens(f"b-{jobs_queue}", 1, 60, want=1)[:2] == (1, 0.0)
    assert jobs_driver.take_tokens(f"a-{jobs_queue}", 1, 60, want=1)[0] == 0


@pytest.mark.jobs_requires(Capability.RATE_LIMITS)
def test_concurrent_callers_never_get_more_than_the_window_holds(
    jobs_driver_factory: DriverFactory, jobs_queue: str
) -> None:
    key = f"rate-{jobs_queue}"
    callers, count = 4, 25
    drivers = [jobs_driver_factory() for _ in range(callers)]
    got = [0] * callers
    errors: list[BaseException] = []
    barrier = threading.Barrier(callers)

    def take(index: int) -> None:
        barrier.wait()
        try:
            for _ in range(20):
                got[index] += drivers[index].take_tokens(key, count, 60.0, want=3)[0]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(delivery_timeout() * 3)
    assert not errors, f"concurrent takers failed: {errors[:3]}"
    assert sum(got) == count, f"granted {got} (sum {sum(got)}) of a window of {count}"


# -- CONCURRENCY_LIMITS --------------------------------------------------------------


@pytest.mark.jobs_requires(Capability.CONCURRENCY_LIMITS)
def test_slots_are_taken_up_to_the_limit_and_freed_on_release(jobs_driver: Driver, jobs_queue: str) -> None:
    key = f"slot-{jobs_queue}"
    assert jobs_driver.acquire_slot(key, 2, "a", 60)
    assert jobs_driver.acquire_slot(key, 2, "b", 60)
    assert not jobs_driver.acquire_slot(key, 2, "c", 60)
    assert jobs_driver.acquire_slot(key, 2, "a", 60)  # a holder taking its slot again keeps it
    jobs_driver.release_slot(key, "a")
    jobs_driver.release_slot(key, "a")  # twice: nothing
    assert jobs_driver.acquire_slot(key, 2, "c", 60)
    assert not jobs_driver.acquire_slot(key, 2, "d", 60)
    assert jobs_driver.acquire_slot(f"other-{jobs_queue}", 2, "d", 60)


@pytest.mark.jobs_requires(Capability.CONCURRENCY_LIMITS)
def test_slots_taken_in_one_call_stop_at_the_limit_and_are_freed_together(
    jobs_driver: Driver, jobs_queue: str
) -> None:
    key, other = f"slots-{jobs_queue}", f"other-{jobs_queue}"
    assert jobs_driver.acquire_slots(key, 3, ["a", "b"], 60) == 2
    # "b" keeps its slot, "c" takes the last one, "d" finds none (and "e" after it is not tried).
    assert jobs_driver.acquire_slots(key, 3, ["b", "c", "d", "e"], 60) == 2
    assert jobs_driver.acquire_slots(other, 1, ["x"], 60) == 1
    jobs_driver.release_slots([(key, "a"), (key, "c"), (key, "never-held"), (other, "x")])
    jobs_driver.release_slots([(key, "a")])  # again: nothing
    jobs_driver.release_slots([])
    assert jobs_driver.acquire_slots(key, 3, ["d", "e", "f"], 60) == 2  # "b" still holds one
    assert jobs_driver.acquire_slot(other, 1, "y", 60)
    assert not jobs_driver.acquire_slot(key, 3, "g", 60)


@pytest.mark.jobs_requires(Capability.CONCURRENCY_LIMITS)
@pytest.mark.parametrize("with_results", [False, True], ids=["ack_many", "ack_results"])
def test_an_acknowledgement_frees_the_slots_of_the_jobs_that_ended(
    jobs_driver: Driver, jobs_queue: str, with_results: bool
) -> None:
    if with_results and not (jobs_driver.supports(Capability.STATUS) and jobs_driver.results_ttl > 0):
        pytest.skip("this driver instance keeps no results")
    key = f"acked-{jobs_queue}"
    jobs_driver.enqueue(messages(jobs_queue, 3))
    batch = reserve_until(jobs_driver, [jobs_queue], 3)
    assert len(batch) == 3
    holders = [d.receipt for d in batch]
    assert jobs_driver.acquire_slots(key, 3, holders, 60) == 3
    assert jobs_driver.acquire_slots(key, 3, ["waiting"], 60) == 0
    # Two jobs finished; the third ended too (it failed: its slot is freed, it is not acknowledged).
    ended = [(key, holder) for holder in holders]
    jobs_driver.ack_freeing_slots(batch[:2], ended, ['{"n": 1}', None] if with_results else None)
    assert jobs_driver.acquire_slots(key, 3, ["next-1", "next-2", "next-3", "next-4"], 60) == 3
    jobs_driver.retry(batch[2], 0.0, "failed")
    again = reserve_one(jobs_driver, jobs_queue)
    assert again.message.id == batch[2].message.id, "only the acknowledged jobs are gone"
    assert_nothing(jobs_driver, [jobs_queue])
    jobs_driver.ack_freeing_slots([again], [])  # no slot to free: an acknowledgement


@pytest.mark.jobs_requires(Capability.CONCURRENCY_LIMITS)
def test_slots_whose_lease_ended_do_not_count_when_taken_in_one_call(
    jobs_driver_factory: DriverFactory, jobs_queue: str
) -> None:
    crashed, alive = jobs_driver_factory(), jobs_driver_factory()
    key = f"slots-{jobs_queue}"
    assert crashed.acquire_slots(key, 3, ["gone-1", "gone-2"], 1.0) == 2
    assert alive.acquire_slots(key, 3, ["a", "b"], 60) == 1
    time.sleep(1.2)
    assert alive.acquire_slots(key, 3, ["b", "c", "d"], 60) == 2  # "a" holds the third
    assert not crashed.extend_slot(key, "gone-1", 60)
    alive.release_slots([(key, "a"), (key, "b"), (key, "c")])
    assert alive.acquire_slots(key, 3, ["e", "f", "g", "h"], 60) == 3


@pytest.mark.jobs_requires(Capability.CONCURRENCY_LIMITS)
def test_a_slot_whose_lease_ended_is_free_and_cannot_be_extended(
    jobs_driver_factory: DriverFactory, jobs_queue: str
) -> None:
    crashed, alive = jobs_driver_factory(), jobs_driver_factory()
    key = f"slot-{jobs_queue}"
    assert crashed.acquire_slot(key, 1, "crashed", 1.5)
    assert not alive.acquire_slot(key, 1, "alive", 60)
    time.sleep(1.7)
    assert alive.acquire_slot(key, 1, "alive", 60)
    assert not crashed.extend_slot(key, "crashed", 60)
    assert alive.extend_slot(key, "alive", 60)


@pytest.mark.jobs_requires(Capability.CONCURRENCY_LIMITS)
def test_an_extended_slot_outlives_its_first_lease(jobs_driver: Driver, jobs_queue: str) -> None:
    key = f"slot-{jobs_queue}"
    assert jobs_driver.acquire_slot(key, 1, "holder", 1.5)
    time.sleep(0.2)
    assert jobs_driver.extend_slot(key, "holder", 60)
    time.sleep(1.5)
    assert not jobs_driver.acquire_slot(key, 1, "other", 60)


@pytest.mark.jobs_requires(Capability.CONCURRENCY_LIMITS)
def test_concurrent_callers_never_hold_more_slots_than_the_limit(
    jobs_driver_factory: DriverFactory, jobs_queue: str
) -> None:
    key = f"slot-{jobs_queue}"
    callers, limit = 4, 3
    drivers = [jobs_driver_factory() for _ in range(callers)]
    holding: set[str] = set()
    most = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(callers)

    def work(index: int) -> None:
        barrier.wait()
        try:
            hold(index)
        except BaseException as exc:
            errors.append(exc)

    def hold(index: int) -> None:
        for round_ in range(15):
            holder = f"{index}-{round_}"
            if round_ % 2:  # taken and freed in batches, as a worker does
                pair = [holder, f"{holder}-b"]
                taken = pair[: drivers[index].acquire_slots(key, limit, pair, 60)]
                with lock:
                    holding.update(taken)
                    most[0] = max(most[0], len(holding))
                time.sleep(0.002)
                with lock:
                    holding.difference_update(taken)
                drivers[index].release_slots([(key, h) for h in taken])
            elif drivers[index].acquire_slot(key, limit, holder, 60):
                with lock:
                    holding.add(holder)
                    most[0] = max(most[0], len(holding))
                time.sleep(0.002)
                with lock:
                    holding.discard(holder)
                drivers[index].release_slot(key, holder)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(delivery_timeout() * 3)
    assert not errors, f"concurrent takers failed: {errors[:3]}"
    assert 1 <= most[0] <= limit, f"{most[0]} holders at once with a limit of {limit}"


# -- TENANT_FAIRNESS -------------------------------------------------------------------


@pytest.mark.jobs_requires(Capability.TENANT_FAIRNESS)
def test_tenants_of_a_queue_take_turns(jobs_driver: Driver, jobs_queue: str) -> None:
    jobs_driver.enqueue(messages(jobs_queue, 300, headers={TENANT_HEADER: "big"}))
    small = [message(jobs_queue, {"small": n}, headers={TENANT_HEADER: "small"}) for n in range(5)]
    plain = [message(jobs_queue, {"plain": n}) for n in range(2)]
    jobs_driver.enqueue([*small, *plain])
    got = reserve_until(jobs_driver, [jobs_queue], 14)
    tenants = [d.message.headers.get(TENANT_HEADER, "") for d in got[:14]]
    assert tenants.count("small") == 5, f"the small tenant's jobs waited behind the big one's: {tenants}"
    assert tenants.count("") == 2
    small_seen = [d.message.payload["small"] for d in got if d.message.headers.get(TENANT_HEADER) == "small"]
    assert small_seen == [0, 1, 2, 3, 4], "a tenant's own jobs keep their order"
