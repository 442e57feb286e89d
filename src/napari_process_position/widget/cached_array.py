"""A layer's data over a store: one channel's TZYX volumes read lazily, a few slices in memory.

Input layers and the output layers of a run that writes a store both show a
channel of an on-disk array through a :class:`CachedArray`: napari slices it as
it slices any array, and it costs what is on screen, not the whole array.

What must not be read on the main thread is read elsewhere and handed over:

- following the newest time point, the sink has a background job read the
  slices the slider is about to show (:func:`.jobs.read_slices`) and hands them
  to :meth:`CachedArray.keep`;
- a run's finished volume was read back by the run's job; the sink keeps the
  slice on screen (:meth:`CachedArray.keep`) and refreshes the layer.

A preview into a run's layers writes its volume here too (``data[t, ...] =
volume``): held in memory for that time point only, never written to the store.
Qt-free.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from napari_process_position.store.layout import PositionInfo

__all__ = ["CACHE_BYTES", "CACHE_SLICES", "CachedArray"]

#: Slices kept in memory per layer (the newest ones)...
CACHE_SLICES = 4
#: ...and at most this many bytes of them (but always the newest one, a whole volume in 3D).
CACHE_BYTES = 64 * 2**20


class CachedArray:
    """One channel's TZYX volumes of a store, lazy, served from memory when kept.

    Parameters
    ----------
    info
        The position whose array is shown.
    channel
        The channel shown.
    times
        The store's time points that the layer's first axis shows (None: all).
    level
        The resolution level shown (0: full resolution; see :mod:`.multiscale`).
    """

    def __init__(
        self, info: PositionInfo, channel: int, times: list[int] | None, level: int = 0
    ) -> None:
        self.info = info
        self.channel = channel
        self.times = times
        self.level = level
        self._source = info.open_level(level)[:, channel]
        n_t = len(times) if times is not None else info.shape[0]
        grid = info.level_grids[level - 1].shape if level else info.shape
        self.shape = (n_t, *(int(n) for n in grid[2:]))
        self.dtype = np.dtype(info.dtype)
        self.ndim = 4
        self.size = int(np.prod(self.shape))
        self._cache: collections.OrderedDict[tuple[int, Any], np.ndarray] = (
            collections.OrderedDict()
        )
        #: Volumes written into the layer (a preview's), by time index: they hide the store's.
        self._written: dict[int, np.ndarray] = {}

    def store_time(self, t: int) -> int:
        """Return the store's time point that index ``t`` of this layer shows."""
        return int(self.times[t]) if self.times is not None else int(t)

    def keep(self, t: int, where: tuple[Any, ...], data: np.ndarray) -> None:
        """Hold ``data``, the slice ``[t, *where]`` of this layer, in memory."""
        key = (int(t), where)
        self._cache[key] = data
        self._cache.move_to_end(key)
        while len(self._cache) > 1 and (
            len(self._cache) > CACHE_SLICES
            or sum(held.nbytes for held in self._cache.values()) > CACHE_BYTES
        ):
            self._cache.popitem(last=False)

    def has(self, t: int, where: tuple[Any, ...]) -> bool:
        """Tell whether the slice ``[t, *where]`` is in memory."""
        return (int(t), where) in self._cache or int(t) in self._written

    def held_bytes(self) -> int:
        """Return the bytes this layer holds in memory (kept slices and written volumes)."""
        kept = sum(held.nbytes for held in self._cache.values())
        return kept + sum(volume.nbytes for volume in self._written.values())

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(_one(index) for index in key):
            # One-plane slabs (napari's projection modes): the same planes, axes kept.
            plain = tuple(index.start if _one(index) else index for index in key)
            keep = tuple(
                np.newaxis if _one(index) else slice(None)
                for index in key
                if not isinstance(index, (int, np.integer))
            )
            return self[plain][keep]
        head = key[0]
        if isinstance(head, (int, np.integer)):
            t = int(head)
            rest = key[1:]
            if t in self._written:
                return self._written[t][rest]
            for (held_t, where), data in self._cache.items():
                if held_t != t:
                    continue
                if where == ():  # a whole volume
                    return data[rest] if rest else data
                lead = rest[: len(where)]
                if (
                    len(lead) == len(where)
                    and all(isinstance(i, (int, np.integer)) for i in lead)
                    and tuple(int(i) for i in lead) == where
                ):
                    inner = rest[len(where) :]
                    return data[inner] if inner else data
            return np.asarray(self._source[(self.store_time(t), *rest)].read().result())
        picked = list(range(self.shape[0]))[head] if isinstance(head, slice) else None
        store_key = key
        if picked is not None and self.times is not None:
            store_key = ([self.times[i] for i in picked], *key[1:])
        result = np.asarray(self._source[store_key].read().result())
        if picked is not None and self._written:
            for i, t in enumerate(picked):
                if t in self._written:
                    result = result.copy() if not result.flags.writeable else result
                    result[i] = self._written[t][key[1:]]
        return result

    def __setitem__(self, key: Any, value: Any) -> None:
        """Write into time point ``key[0]`` of the layer (in memory: the store is not changed)."""
        key = key if isinstance(key, tuple) else (key,)
        t = int(key[0])
        volume = self._written.get(t)
        if volume is None:  # the rest of the volume shows what the store holds
            volume = np.array(self._source[self.store_time(t)].read().result())
            self._written[t] = volume
            for held in [held for held in self._cache if held[0] == t]:
                del self._cache[held]
        volume[key[1:]] = value

    def replace(self, t: int, volume: np.ndarray) -> None:
        """Show ``volume`` at time point ``t`` (in memory: the store is not changed)."""
        self._written[int(t)] = volume
        for held in [held for held in self._cache if held[0] == int(t)]:
            del self._cache[held]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self[:], dtype=dtype)


def _one(index: Any) -> bool:
    """Tell whether ``index`` is a slice of exactly one element, ``t:t+1``."""
    return (
        isinstance(index, slice)
        and index.start is not None
        and index.stop is not None
        and index.stop - index.start == 1
        and index.step in (None, 1)
    )
