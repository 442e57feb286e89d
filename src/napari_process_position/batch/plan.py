"""The plan of a batch: which positions, and what each output position holds.

The output's shape, dtype, scale and channel names come from the transform's
declarations (``@transform(same_shape=..., output_zyx_shape=...)``), or from
running it once on the first non-empty selected volume, through the same
transform call as a run (:func:`..core.apply.apply_transform`).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from napari_process_position.batch.config import RunConfig
from napari_process_position.batch.sampling import sample_positions
from napari_process_position.core.apply import apply_transform, is_empty, raised_by_transform
from napari_process_position.core.errors import (
    InvalidStoreError,
    PositionNotFoundError,
    TransformError,
)
from napari_process_position.store.layout import (
    OutputLayout,
    PositionInfo,
    StoreInfo,
    layout_from,
    output_axes,
)
from napari_process_position.store.metadata import open_store, read_position
from napari_process_position.transforms import TransformSpec
from napari_process_position.transforms.registry import get_transform

__all__ = [
    "RunPlan",
    "all_if_none",
    "output_axes",  # (its home is store.layout; here for the widget's form)
    "output_layout",
    "plan_run",
    "plan_store",
    "select_positions",
]


def all_if_none(indices: list[int] | tuple[int, ...] | None, count: int) -> list[int]:
    """Return the selected indices, or every index below ``count`` when none are selected.

    The one rule for a selection of channels or time points left empty
    (``RunConfig.channels`` / ``times`` None: all of them).

    Examples
    --------
    >>> all_if_none(None, 3), all_if_none([2, 0], 3)
    ([0, 1, 2], [2, 0])
    """
    return list(indices) if indices else list(range(count))


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
    """Run the transform once, in this process, to learn its output shape and dtype.

    Through :func:`..core.apply.apply_transform`, the one call a run makes: the
    same arguments, the same refusals of a result that cannot be stored.
    """
    source = info.open_array()
    for t in times:
        for c in channels:
            block = source[t][[c]].read().result()
            if is_empty(block):
                continue
            try:
                return apply_transform(
                    spec.func, block, params, name=spec.name, time_index=t, channels=c
                )
            except Exception as exc:
                if not raised_by_transform(exc):
                    raise  # a result that cannot be stored: its message names the (t, c)
                raise TransformError(
                    f"transform {spec.name!r} failed on t={t}, c={c} while finding its output "
                    f"shape: {type(exc).__name__}: {exc}",
                    t,
                    c,
                ) from exc
    raise InvalidStoreError(
        f"{info.path}: every selected volume is empty (all zeros or NaN); nothing to process"
    )


def output_layout(
    spec: TransformSpec,
    info: PositionInfo,
    params: dict[str, Any],
    channels: list[int],
    times: list[int],
    *,
    levels: int | Literal["auto"] = 1,
) -> OutputLayout:
    """Shape, dtype, scale and channel names of the output of ``spec`` on ``info``.

    From the transform's declarations (``@transform(same_shape=...,
    output_zyx_shape=...)``), or by running it once on the first non-empty
    selected volume; the rest as :func:`..store.layout.layout_from` makes it.
    """
    meta = spec.meta
    probed: np.ndarray | None = None
    if meta.output_zyx_shape is None and not meta.same_shape:
        probed = _probe(spec, info, channels, times, params)  # its shape and dtype, as run
    if meta.output_zyx_shape is not None:
        out_zyx = tuple(int(n) for n in meta.output_zyx_shape(info.volume_shape, **params))
    else:
        out_zyx = tuple(probed.shape[-3:]) if probed is not None else info.volume_shape
    if meta.output_dtype is not None:
        dtype = np.dtype(meta.output_dtype(np.dtype(info.dtype), **params))
    else:
        dtype = probed.dtype if probed is not None else np.dtype(info.dtype)
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise TransformError(
            f"transform {spec.name!r} produces {dtype}, which OME-Zarr cannot store"
        )
    if dtype == np.float16 or dtype.kind == "b":
        dtype = np.dtype("float32") if dtype == np.float16 else np.dtype("uint8")
    scale = list(info.scale)
    if meta.output_scale is not None:
        scale[2:] = [float(s) for s in meta.output_scale(tuple(info.scale[2:]), **params)]
    names = [info.channel_names[c] for c in channels]
    if meta.output_channel_names is not None:
        names = [str(n) for n in meta.output_channel_names(names, **params)]
    return layout_from(
        info,
        len(times),
        names,
        zyx=out_zyx,
        dtype=dtype.str,
        scale=scale if meta.output_scale is not None else None,
        levels=levels,
    )


@dataclass(frozen=True)
class RunPlan:
    """What a config selects, and what its output holds (nothing is written yet).

    Attributes
    ----------
    store, keys, inputs
        The input store, the selected position keys and their metadata.
    spec, params
        The transform (None when only an output like the input is planned) and
        its checked parameters.
    channels, times
        The selected input channel and time indices.
    layouts
        Position key -> what its output position holds.
    """

    store: StoreInfo
    keys: list[str]
    inputs: dict[str, PositionInfo]
    spec: TransformSpec | None
    params: dict[str, Any]
    channels: list[int]
    times: list[int]
    layouts: dict[str, OutputLayout]


def plan_run(
    config: RunConfig, *, sized_by_transform: bool = True, store: StoreInfo | None = None
) -> RunPlan:
    """Check a config's input, selection and transform, and size its output.

    Parameters
    ----------
    config
        The run.
    sized_by_transform
        Size the output by the transform (default); False: like the input,
        and the transform is not looked up.
    store
        The input store, when the caller has opened it already.

    Returns
    -------
    RunPlan

    Raises
    ------
    InvalidStoreError
        A bad input store, or a channel or time point it does not have.
    PositionNotFoundError
        A position pattern that matches nothing.
    TransformError
        An unknown transform, a bad parameter, or one that fails while its
        output is sized.
    """
    if store is None:
        store = open_store(config.input)
    return plan_store(config, store, sized_by_transform=sized_by_transform)


def plan_store(config: RunConfig, store: StoreInfo, *, sized_by_transform: bool = True) -> RunPlan:
    """Plan a config over its input store, opened already: :func:`plan_run` without opening it.

    Returns
    -------
    RunPlan

    Raises
    ------
    ProcessPositionError
        As :func:`plan_run`.
    """
    keys = select_positions(store, config.positions)
    if config.sample is not None and config.seed is not None:
        keys = sample_positions(keys, config.sample, config.seed)
    spec = get_transform(config.transform) if sized_by_transform else None
    params = spec.check_params(dict(config.params)) if spec is not None else {}
    inputs = {k: read_position(store.position_path(k), k) for k in keys}
    first = inputs[keys[0]]
    channels = all_if_none(config.channels, first.shape[1])
    times = all_if_none(config.times, first.shape[0])
    for key, info in inputs.items():
        bad_c = [c for c in channels if c >= info.shape[1]]
        bad_t = [t for t in times if t >= info.shape[0]]
        if bad_c:
            raise InvalidStoreError(
                f"position {key} has {info.shape[1]} channels (0 to {info.shape[1] - 1}); "
                f"channel {bad_c[0]} does not exist"
            )
        if bad_t:
            raise InvalidStoreError(
                f"position {key} has {info.shape[0]} time points (0 to {info.shape[0] - 1}); "
                f"time {bad_t[0]} does not exist"
            )
    layouts: dict[str, OutputLayout] = {}
    sized: dict[tuple[Any, ...], OutputLayout] = {}  # positions alike are sized once
    for key, info in inputs.items():
        signature = (
            info.shape,
            info.dtype,
            info.scale,
            info.translation,
            info.shared_transforms,
            info.channel_names,
            info.units,
        )
        if signature not in sized:
            sized[signature] = (
                output_layout(spec, info, params, channels, times, levels=config.pyramid_levels)
                if spec is not None
                else layout_from(
                    info,
                    len(times),
                    [info.channel_names[c] for c in channels],
                    levels=config.pyramid_levels,
                )
            )
        layouts[key] = sized[signature]
    return RunPlan(store, keys, inputs, spec, params, channels, times, layouts)
