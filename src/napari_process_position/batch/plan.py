"""The plan of a batch: which positions, and what each output position holds.

The output's shape, dtype, scale and channel names come from the transform's
declarations (``@transform(same_shape=..., output_zyx_shape=...)``), or from
running it once on the first non-empty selected volume, through the same
transform call as a run (:func:`..core.apply.apply_transform`).
"""

from __future__ import annotations

import fnmatch
from typing import Any

import numpy as np

from napari_process_position.core.apply import is_empty
from napari_process_position.core.errors import (
    InvalidStoreError,
    PositionNotFoundError,
    TransformError,
)
from napari_process_position.store.layout import OutputLayout, PositionInfo, StoreInfo
from napari_process_position.transforms import TransformSpec

__all__ = ["output_layout", "select_positions"]


def select_positions(store: StoreInfo, patterns: list[str] | None) -> list[str]:
    """Position keys matching ``patterns`` (exact keys or globs), in store order."""
    keys = list(store.position_keys)
    if not patterns:
        return keys
    chosen: list[str] = []
    for pattern in patterns:
        pattern = pattern.strip().strip("/")
        matches = [k for k in keys if fnmatch.fnmatchcase(k, pattern)]
        if not matches:
            shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            raise PositionNotFoundError(
                f"no position matches {pattern!r} in {store.path}; it has {shown}"
            )
        chosen.extend(k for k in matches if k not in chosen)
    return chosen


def _probe(
    spec: TransformSpec,
    info: PositionInfo,
    channels: list[int],
    times: list[int],
    params: dict[str, Any],
) -> np.ndarray:
    """Run the transform once, in this process, to learn its output shape and dtype."""
    from napari_process_position.core.apply import accepts_time_index, check_result

    source = info.open_array()
    kwargs = dict(params)
    for t in times:
        for c in channels:
            block = source[t][[c]].read().result()
            if is_empty(block):
                continue
            if accepts_time_index(spec.func):
                kwargs["input_time_index"] = t
            try:
                result = spec.func(block, **kwargs)
            except Exception as exc:
                raise TransformError(
                    f"transform {spec.name!r} failed on t={t}, c={c} while finding its output "
                    f"shape: {type(exc).__name__}: {exc}",
                    t,
                    c,
                ) from exc
            # None, not an array, complex/object, not ZYX/CZYX: one message naming the (t, c).
            return check_result(result, spec.name, t, c)
    raise InvalidStoreError(
        f"{info.path}: every selected volume is empty (all zeros or NaN); nothing to process"
    )


def output_layout(
    spec: TransformSpec,
    info: PositionInfo,
    params: dict[str, Any],
    channels: list[int],
    times: list[int],
) -> OutputLayout:
    """Shape, dtype, scale and channel names of the output of ``spec`` on ``info``."""
    meta = spec.meta
    zyx = info.volume_shape
    names = [info.channel_names[c] for c in channels]
    probed: np.ndarray | None = None
    if meta.output_zyx_shape is not None:
        out_zyx = tuple(int(n) for n in meta.output_zyx_shape(zyx, **params))
    elif meta.same_shape:
        out_zyx = zyx
    else:
        probed = _probe(spec, info, channels, times, params)
        out_zyx = tuple(probed.shape[-3:])
    if meta.output_dtype is not None:
        dtype = np.dtype(meta.output_dtype(np.dtype(info.dtype), **params))
    elif meta.same_shape or meta.output_zyx_shape is not None:
        dtype = np.dtype(info.dtype)
    else:
        if probed is None:
            probed = _probe(spec, info, channels, times, params)
        dtype = probed.dtype
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise TransformError(
            f"transform {spec.name!r} produces {dtype}, which OME-Zarr cannot store"
        )
    if dtype == np.float16 or dtype.kind == "b":
        dtype = np.dtype("float32") if dtype == np.float16 else np.dtype("uint8")
    scale = list(info.scale)
    if meta.output_scale is not None:
        scale[2:] = [float(s) for s in meta.output_scale(tuple(info.scale[2:]), **params)]
    if meta.output_channel_names is not None:
        names = [str(n) for n in meta.output_channel_names(names, **params)]
    default_units: tuple[str | None, ...] = OutputLayout.__dataclass_fields__["units"].default  # type: ignore[assignment]
    units = tuple(info.units) if any(info.units) else default_units
    return OutputLayout(
        shape=(len(times), len(names), out_zyx[0], out_zyx[1], out_zyx[2]),
        dtype=dtype.str,
        scale=tuple(scale),
        channel_names=tuple(names),
        units=units,
    )
