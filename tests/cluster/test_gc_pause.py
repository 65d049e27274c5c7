"""gc_paused is process-wide and the app runs sessions in threads: the collector stays paused while anyone is
inside, comes back when the last one leaves, and only if it was on before."""
from __future__ import annotations

import gc
import threading

import pytest

from cluster.inventory import freeze, gc_paused, unfreeze


@pytest.fixture(autouse=True)
def _gc_restored():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_overlapping_threads_keep_the_collector_paused_until_the_last_leaves():
    gc.enable()
    first_in, second_in, first_out, second_may_leave = (threading.Event() for _ in range(4))
    seen: dict[str, bool] = {}

    def first() -> None:
        with gc_paused():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with gc_paused():
            second_in.set()
            first_out.wait(5)
            seen["after the first left"] = gc.isenabled()  # a flag would have re-enabled it here
            second_may_leave.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    first_out.wait(5)
    second_in.wait(5)
    second_may_leave.set()
    for t in threads:
        t.join(5)
    assert seen == {"after the first left": False}
    assert gc.isenabled()


def test_nested_use_is_reentrant_and_a_disabled_collector_stays_disabled():
    gc.enable()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_many_threads_at_once_leave_the_collector_as_it_was():
    gc.enable()
    barrier = threading.Barrier(8)

    def work() -> None:
        with gc_paused():
            barrier.wait(5)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert gc.isenabled()


def test_what_the_pause_kept_goes_to_the_oldest_generation_unless_something_is_frozen():
    """Else the first allocation after the pause collects the youngest generation and walks all of it (a whole
    inventory); unfreezing to get there must not thaw what someone froze (the app freezes its inventories)."""
    gc.enable()
    unfreeze()  # an app test in this process may have frozen its inventory
    with gc_paused():
        kept = [[] for _ in range(1000)]
    assert any(o is kept for o in gc.get_objects(generation=2))
    assert not any(o is kept for o in gc.get_objects(generation=0))

    freeze()  # as the app does once it has read a cluster
    try:
        with gc_paused():
            young = [[] for _ in range(1000)]
        # Nothing thawed: what was frozen is in no generation (its count would also drop when a frozen object of
        # another thread, the test runner's, is freed).
        assert not any(o is kept for o in gc.get_objects())
        assert not any(o is young for o in gc.get_objects(generation=2))
    finally:
        unfreeze()
