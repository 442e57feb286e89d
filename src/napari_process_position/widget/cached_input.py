"""An input layer's data: a channel's TZYX volumes read lazily, with slices held in memory.

Following the newest time point must not read from disk on the main thread:
the sink has a background job read the slices the slider is about to show
(:func:`.jobs.read_inputs`) and hands them to :meth:`CachedInput.keep`; napari
then slices the layer from memory. Qt-free.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from napari_process_position.store.layout import PositionInfo

__all__ = ["CACHE_SLICES", "CachedInput"]

#: Input slices kept in memory per input layer (the newest ones).
CACHE_SLICES = 4


class CachedInput:
    """An input layer's data: one channel's TZYX volumes, lazy, served from memory when read.

    napari slices it as it slices any array; a slice read ahead of time by a
    background job (:meth:`keep`) is served from memory, anything else is read
    from the store (by napari, on the main thread, as for any lazy array).
    """

    def __init__(self, info: PositionInfo, channel: int, times: list[int] | None) -> None:
        self.info = info
        self.channel = channel
        self.times = times
        self._source = info.open_array()[:, channel]
        n_t = len(times) if times is not None else info.shape[0]
        self.shape = (n_t, *info.volume_shape)
        self.dtype = np.dtype(info.dtype)
        self.ndim = 4
        self._cache: collections.OrderedDict[tuple[int, Any], np.ndarray] = (
            collections.OrderedDict()
        )

    def input_time(self, t: int) -> int:
        """Return the input time point that index ``t`` of this layer shows."""
        return int(self.times[t]) if self.times is not None else int(t)

    def keep(self, t: int, where: tuple[Any, ...], data: np.ndarray) -> None:
        """Hold ``data``, the slice ``[t, *where]`` of this layer, in memory."""
        self._cache[(int(t), where)] = data
        self._cache.move_to_end((int(t), where))
        while len(self._cache) > CACHE_SLICES:
            self._cache.popitem(last=False)

    def has(self, t: int, where: tuple[Any, ...]) -> bool:
        """Tell whether the slice ``[t, *where]`` is in memory."""
        return (int(t), where) in self._cache

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
            return np.asarray(self._source[(self.input_time(t), *rest)].read().result())
        if isinstance(head, slice) and self.times is not None:
            picked = list(range(self.shape[0]))[head]
            key = ([self.times[i] for i in picked], *key[1:])
        return np.asarray(self._source[key].read().result())

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
