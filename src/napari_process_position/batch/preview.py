"""Preview one (t, c) volume, or a region of it, as a run would compute it.

The widget's live and region previews come through here. A region is grown
by the transform's margin (:meth:`TransformSpec.margin`), read, transformed
and cropped again, so with an exact margin the result equals the same region
of a full run bit for bit. Qt-free: numpy, tensorstore and the package's
engine only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_process_position.core.apply import apply_transform, is_empty
from napari_process_position.core.errors import TransformError
from napari_process_position.store.layout import PositionInfo
from napari_process_position.transforms import TransformSpec
from napari_process_position.transforms.region import region_with_margin

__all__ = ["PreviewResult", "Region", "open_source", "preview_volume", "region_fallback"]

#: A ZYX region of a volume: per axis ``(start, stop)``; Z may be None (every plane).
Region = tuple[tuple[int, int] | None, tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class PreviewResult:
    """One previewed (t, c) volume or region of it.

    Attributes
    ----------
    volume
        The transformed ZYX data of ``where``, in the output dtype; None when
        the input volume is empty (a run skips it and shows zeros).
    where
        The ZYX slices of the output volume that ``volume`` fills.
    read
        The ZYX slices of the input that were read (``where`` plus the margin).
    read_s, compute_s
        Seconds spent reading and transforming.
    """

    volume: np.ndarray | None
    where: tuple[slice, slice, slice]
    read: tuple[slice, slice, slice]
    read_s: float
    compute_s: float


def open_source(info: PositionInfo) -> Any:
    """Open a position's array for reading (reuse it across calls of :func:`preview_volume`)."""
    return info.open_array()


def region_fallback(
    spec: TransformSpec,
    params: dict[str, Any],
    in_zyx: Sequence[int],
    out_zyx: Sequence[int],
) -> str | None:
    """Why a region preview of ``spec`` must process the whole volume, or None when it need not.

    A transform that changes the volume's shape has no "same region" of its
    output; one that declares no margin may use every input voxel for each
    output voxel.
    """
    if tuple(int(n) for n in in_zyx) != tuple(int(n) for n in out_zyx):
        return f"{spec.display_name} changes the volume's shape"
    if spec.margin(params) == (None, None, None):
        return f"{spec.display_name} declares no margin (each voxel may depend on all others)"
    return None


def preview_volume(
    info: PositionInfo,
    spec: TransformSpec,
    params: dict[str, Any],
    time_index: int,
    channel: int,
    *,
    region: Region | None = None,
    output_dtype: Any = None,
    source: Any = None,
    block: np.ndarray | None = None,
) -> PreviewResult:
    """Transform one (t, c) volume of a position, or a region of it, as a run does.

    Parameters
    ----------
    info
        The input position.
    spec
        The transform.
    params
        Its parameters, complete and checked (:meth:`TransformSpec.check_params`).
    time_index, channel
        Which input volume.
    region
        ZYX region of the output to compute (None: the whole volume). The
        transform must keep the shape (see :func:`region_fallback`).
    output_dtype
        The output layout's dtype; the result is cast to it as a worker casts.
    source
        The position's array from :func:`open_source` (opened here when None).
    block
        The whole input volume ``(1, Z, Y, X)``, when the caller has read it
        already (then nothing is read here; not with ``region``).

    Raises
    ------
    TransformError
        The transform failed or returned something that is not one volume.
    """
    if source is None:
        source = open_source(info)
    zyx = info.volume_shape
    full = (slice(0, zyx[0]), slice(0, zyx[1]), slice(0, zyx[2]))
    if region is None:
        read, crop = full, full
    else:
        read, crop = region_with_margin(zyx, list(region), spec.margin(params))
    z, y, x = (slice(r.start + c.start, r.start + c.stop) for r, c in zip(read, crop, strict=True))
    where = (z, y, x)
    start = time.perf_counter()
    # (t, [c], z, y, x): the (1, Z, Y, X) block a one-channel task reads.
    if block is None or region is not None:
        block = source[time_index, [channel], read[0], read[1], read[2]].read().result()
    if is_empty(block) and (
        read == full or is_empty(source[time_index, [channel]].read().result())
    ):
        # An empty input volume is skipped by a run: its output stays at zero.
        return PreviewResult(None, where, read, time.perf_counter() - start, 0.0)
    read_done = time.perf_counter()
    # The run's own transform call: the same arguments, checks and cast (NaN into an
    # integer output is refused here as in the run).
    expected = (1, *(s.stop - s.start for s in read)) if region is not None else None
    try:
        out = apply_transform(
            spec.func,
            block,
            params,
            name=spec.name,
            time_index=time_index,
            channels=(channel,),
            source=info.path,
            expected_shape=expected,
            output_dtype=output_dtype,
        )
    except TransformError:
        raise
    except Exception as exc:
        raise TransformError(
            f"transform {spec.name!r} failed on t={time_index}, c={channel}: "
            f"{type(exc).__name__}: {exc}",
            time_index,
            channel,
        ) from exc
    if out.ndim == 4 and out.shape[0] == 1:
        out = out[0]
    if out.ndim != 3:
        raise TransformError(
            f"transform {spec.name!r} returned shape {out.shape} for t={time_index}, "
            f"c={channel}; expected one ZYX volume",
            time_index,
            channel,
        )
    if region is not None:
        out = out[crop]
    return PreviewResult(out, where, read, read_done - start, time.perf_counter() - read_done)
