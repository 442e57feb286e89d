"""What the form has chosen to work on: the input store and the position in it.

The controller owns it (Qt-free); the view asks the controller to choose a
store or a position (:mod:`.form_controller`) and renders what it holds: the
position keys, the channel names, the time points. Opening a store and reading
a position's metadata happen here, so no view code opens stores or assigns the
controller's state. A change of store or position emits ``events.store`` or
``events.info`` (psygnal), as the form's model does.
"""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from typing import ClassVar

from psygnal import SignalGroupDescriptor

from napari_process_position.store.layout import PositionInfo, StoreInfo
from napari_process_position.store.metadata import open_store, read_position

__all__ = ["Selection"]


@dataclass
class Selection:
    """The chosen input store and position (None until chosen, or when unreadable)."""

    #: A store or position read again is a change, even when equal to the one before.
    events: ClassVar[SignalGroupDescriptor] = SignalGroupDescriptor(
        equality_operators={"store": operator.is_, "info": operator.is_}
    )

    store: StoreInfo | None = None
    info: PositionInfo | None = None

    def clear(self) -> None:
        """Forget the store and the position (the input field was emptied)."""
        self.info = None
        self.store = None

    def choose_store(self, path: str | os.PathLike[str]) -> StoreInfo:
        """Open the store at ``path`` and choose it; the position is chosen afterwards.

        Raises
        ------
        ProcessPositionError
            Not an OME-Zarr plate or position we can read (the selection is then empty).
        """
        self.clear()
        self.store = open_store(str(path))
        return self.store

    def choose_position(self, key: str | None) -> PositionInfo | None:
        """Choose position ``key`` of the store and return its metadata (None: none chosen).

        Choosing the position already chosen reads nothing.

        Raises
        ------
        ProcessPositionError
            The position cannot be read (the selection then has no position).
        """
        store, info = self.store, self.info
        if store is None or key is None:
            self.info = None
            return None
        path = store.position_path(key)
        if info is not None and info.path == path:
            return info
        try:
            info = read_position(path, key)
        except Exception:
            self.info = None
            raise
        self.info = info
        return info

    def position_path(self, key: str) -> str | None:
        """Return where position ``key`` of the chosen store is (None without a store)."""
        return self.store.position_path(key) if self.store is not None else None

    @property
    def position_keys(self) -> list[str]:
        """The chosen store's position keys (none without a store)."""
        return list(self.store.position_keys) if self.store is not None else []

    @property
    def channel_names(self) -> list[str]:
        """The chosen position's channel names (none without a position)."""
        return list(self.info.channel_names) if self.info is not None else []
