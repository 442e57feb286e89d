"""Run several positions at once, each in its own thread, and merge what they yield."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["interleaved"]

T = TypeVar("T")


@dataclass
class _Failure:
    exc: BaseException


def interleaved(
    keys: Iterable[str],
    run_one: Callable[[str], Iterator[T]],
    *,
    concurrency: int,
    queue_size: int,
    should_stop: Callable[[], bool],
    on_leave: Callable[[], None],
) -> Iterator[T]:
    """Run ``run_one(key)`` for ``concurrency`` keys at a time; yield their items as they come.

    Parameters
    ----------
    keys
        The keys, taken in order by whichever thread is free.
    run_one
        A generator of one key's items (closed when the consumer leaves early).
    concurrency
        Threads, each running one key at a time.
    queue_size
        Items waiting for the consumer at most (a bound on memory).
    should_stop
        Asked before each key: True starts no more.
    on_leave
        Called when the consumer leaves before the end (to cancel what runs).

    Raises
    ------
    BaseException
        What a ``run_one`` raised, in the consumer.
    """
    items: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
    pending = iter(keys)
    pending_lock = threading.Lock()
    stop = threading.Event()
    finished = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def drive() -> None:
        try:
            while not stop.is_set() and not should_stop():
                with pending_lock:
                    key = next(pending, None)
                if key is None:
                    break
                with contextlib.closing(run_one(key)) as results:  # type: ignore[type-var]
                    for item in results:
                        if not put(item):
                            return
        except BaseException as exc:  # re-raised in the consumer
            put(_Failure(exc))
        finally:
            put(finished)

    threads = [
        threading.Thread(target=drive, name=f"npp-positions-{i}", daemon=True)
        for i in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    done = 0
    try:
        while done < len(threads):
            try:
                item = items.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is finished:
                done += 1
            elif isinstance(item, _Failure):
                raise item.exc
            else:
                yield item
    finally:
        if done < len(threads):  # left early: stop the positions still running
            stop.set()
            on_leave()
        for thread in threads:
            thread.join(timeout=30)
