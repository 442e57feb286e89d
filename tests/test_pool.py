"""The process pool leaves no process behind: closed while warming, killed mid-shutdown, loaded.

These run beside a CPU hog (two busy processes), since the leaks they guard against were
races that a loaded machine lets happen: a worker started by a warm-up that began before
the pool was closed, or one spawned by a ``submit`` while the pool was being killed.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from napari_process_position import ProcessPool
from napari_process_position.core.errors import CancelledRunError

SETTLE_S = 30.0


def pool_children() -> set[int]:
    """Pids of this process's live children other than multiprocessing's resource tracker."""
    out = set()
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
            pool_worker = "multiprocessing" in cmd and "resource_tracker" not in cmd
            if pool_worker and child.status() != psutil.STATUS_ZOMBIE:
                out.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return out


def wait_until_gone(pids: set[int], timeout: float = SETTLE_S) -> set[int]:
    """Wait for these processes to end; return those still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive &= pool_children()
        time.sleep(0.05)
    return alive


@pytest.fixture
def no_leftovers():
    """Fail the test that leaves a pool process alive, and kill it so no later test sees it."""
    before = pool_children()
    yield
    left = wait_until_gone(pool_children() - before)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"pool processes outlived their pool: {sorted(left)}"


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.1, 0.5, 2.0])
def test_close_while_warming_leaves_no_process(cpu_hog, no_leftovers, delay):
    pool = ProcessPool(2)
    warmed: list[object] = []

    def warm() -> None:
        try:
            warmed.append(pool.warm())
        except Exception as exc:  # closed before or while warming: fine
            warmed.append(exc)

    thread = threading.Thread(target=warm)
    thread.start()
    time.sleep(delay)
    pool.close()
    thread.join(SETTLE_S)
    assert not thread.is_alive(), "warm() did not return after close()"
    assert pool.closed
    # A closed pool never starts workers again, whoever asks.
    with pytest.raises(CancelledRunError, match="closed"):
        pool.warm()
    assert not wait_until_gone(pool_children())


def test_a_killed_pool_can_start_again_but_a_closed_one_cannot(no_leftovers):
    pool = ProcessPool(1)
    first = set(pool.warm())
    pool.kill()
    assert not wait_until_gone(first)
    second = set(pool.warm())  # the engine reuses a pool it killed (a dead worker, a cancel)
    assert second and not second & first
    pool.close(kill=False)
    assert not wait_until_gone(second)
    with pytest.raises(CancelledRunError):
        pool.executor  # noqa: B018


def test_worker_killed_mid_shutdown(cpu_hog, no_leftovers):
    """One worker dies (SIGKILL from outside) while the pool shuts down; the rest still end."""
    pool = ProcessPool(2)
    pids = set(pool.warm())
    assert len(pids) == 2
    victim = min(pids)
    closing = threading.Thread(target=pool.close, kwargs={"kill": False})
    closing.start()
    os.kill(victim, signal.SIGKILL)
    closing.join(SETTLE_S)
    assert not closing.is_alive()
    assert not wait_until_gone(pids)


def test_worker_killed_then_pool_closed(cpu_hog, no_leftovers):
    """A pool broken by a dead worker (workers ignore SIGTERM) is still emptied by close()."""
    pool = ProcessPool(2)
    pids = set(pool.warm())
    os.kill(min(pids), signal.SIGKILL)
    time.sleep(0.5)  # the executor sees the death and tries to terminate the others
    pool.close()
    assert not wait_until_gone(pids)


def test_a_result_cut_short_by_a_kill_does_not_hang_the_pool_or_exit(no_leftovers):
    """A worker killed mid-send leaves half a message in the result pipe; kill() must end that.

    The manager thread would otherwise wait for the rest forever, and interpreter exit
    (which joins it) with it: a suite that passed and never ended.
    """
    import struct

    pool = ProcessPool(1)
    pids = set(pool.warm())
    executor = pool.executor
    manager = executor._executor_manager_thread
    writer = executor._result_queue._writer
    # What a worker killed after the first bytes of a 100-byte result leaves behind.
    os.write(writer.fileno(), struct.pack("!i", 100) + b"half")
    time.sleep(0.5)  # the manager thread is now blocked reading the rest
    assert manager.is_alive()
    pool.kill()
    manager.join(SETTLE_S)
    assert not manager.is_alive(), "the pool's manager thread still waits for the rest"
    assert not wait_until_gone(pids)
