"""``process_single_position``: the drop-in for iohub 0.3.11's function of that name.

Wherever iohub accepts a call, this gives iohub's result: the same task set
and defaults, processing in place when the output is the input, the
transform's own exception type, ``FileNotFoundError`` for a missing output
position and ``ValueError`` for a time index beyond the data, and
``extra_metadata`` written as top-level attributes of the output position.
Nothing is written before the whole call is checked. The deliberate
differences (we are stricter in a few places) are listed in
``docs/iohub.md``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from napari_process_position.core.errors import CancelledRunError, InvalidArgumentError
from napari_process_position.engine.stream import stream_position

__all__ = ["process_single_position"]

log = logging.getLogger(__name__)

#: Attribute keys of an OME-Zarr group that ``extra_metadata`` must not replace.
_OME_KEYS = frozenset({"ome", "multiscales", "omero", "labels", "version", "plate", "well"})


def _check_extra_metadata(extra: Any) -> Mapping[str, Any]:
    if not isinstance(extra, Mapping):
        raise InvalidArgumentError(f"extra_metadata must be a mapping, got {type(extra).__name__}")
    bad = [k for k in extra if not isinstance(k, str)]
    if bad:
        raise InvalidArgumentError(f"extra_metadata keys must be strings, got {bad}")
    reserved = sorted(_OME_KEYS.intersection(extra))
    if reserved:
        raise InvalidArgumentError(
            f"extra_metadata keys {reserved} are reserved OME-Zarr keys; use a namespaced key "
            "such as '<package>-<step>'"
        )
    return extra


def _write_extra_metadata(output_position_path: str | os.PathLike[str], extra: Mapping) -> None:
    import zarr

    group = zarr.open_group(str(output_position_path), mode="r+")
    for key, value in extra.items():
        if key in group.attrs:
            warnings.warn(
                f"extra_metadata key {key!r} already exists on {output_position_path} and will "
                "be overwritten",
                UserWarning,
                stacklevel=3,
            )
        group.attrs[key] = value


def process_single_position(
    func: Callable[..., Any] | str,
    input_position_path: str | os.PathLike[str],
    output_position_path: str | os.PathLike[str],
    input_channel_indices: Sequence[Any] | None = None,
    output_channel_indices: Sequence[Any] | None = None,
    input_time_indices: Sequence[int] | None = None,
    output_time_indices: Sequence[int] | None = None,
    num_workers: int = 1,
    use_threads: bool = False,
    resume: bool = False,
    resume_token: str | None = None,
    **kwargs: Any,
) -> None:
    """Apply ``func`` to every (time, channel) block of a position and write the results.

    A drop-in for iohub 0.3.11's ``process_single_position``: the same task
    set, defaults and results, on an output position that already exists
    (it may be the input: the position is then processed in place).

    Parameters
    ----------
    func
        ``func(czyx, **kwargs) -> array``; gets ``input_time_index=t`` too
        when its signature names it. Blocks where a channel is all zeros or
        all NaN are skipped (the output keeps its fill value).
    input_position_path, output_position_path
        Position folders (``plate.zarr/A/1/0``); the output must exist.
    input_channel_indices, output_channel_indices
        Lists of channel groups: ``[[0], [1]]`` (default, one per channel),
        ``[[0, 1]]`` or ``[slice(0, 2)]`` (CZYX to the transform), ``[0, 1]``
        (ZYX to the transform). As in iohub, ``output_channel_indices`` is
        ignored when ``input_channel_indices`` is None (with a warning).
    input_time_indices, output_time_indices
        Time points to read and where to write them; default all, same.
    num_workers
        1 or less runs serially; more uses threads or spawned processes,
        capped by :func:`available_cpus`.
    use_threads
        Threads instead of processes.
    resume
        Skip volumes that a previous run completed exactly as this call would
        make them (same input volumes, transform and its source, parameters
        by value, ``resume_token``, output layout), with their files intact.
    resume_token
        Your own fingerprint of the settings; a record made under another
        token is not trusted.
    **kwargs
        Passed to ``func``. ``extra_metadata`` (any mapping with string keys)
        is written as top-level attributes of the output position instead;
        an existing key is overwritten with a warning.

    Returns
    -------
    None
        The volumes are in the output position.

    Raises
    ------
    FileNotFoundError
        The input or output position does not exist
        (:class:`StoreNotFoundError`).
    ValueError
        A time or channel index beyond the data
        (:class:`IndexOutOfRangeError`), indices that do not pair up, or
        ``extra_metadata`` using a reserved OME-Zarr key.
    TypeError
        ``extra_metadata`` is not a mapping with string keys.
    Exception
        Whatever ``func`` raised, of its own type, with a note naming the
        transform and the (t, c).
    TransformError
        ``func`` returned something that cannot be stored (None, complex
        values, the wrong shape, NaN for an integer output).
    WorkerDiedError
        A worker process died (killed, out of memory, crashed).

    Examples
    --------
    >>> def double(czyx, factor=2.0):          # doctest: +SKIP
    ...     return czyx * factor
    >>> process_single_position(double, "in.zarr/A/1/0", "out.zarr/A/1/0",
    ...                         num_workers=4, factor=3.0)  # doctest: +SKIP
    """
    extra = kwargs.pop("extra_metadata", None)
    if extra is not None:
        extra = _check_extra_metadata(extra)
    if input_channel_indices is None and output_channel_indices is not None:
        warnings.warn(
            "output_channel_indices is ignored when input_channel_indices is None: every "
            "channel is written to its own index, as iohub does; give both to map channels",
            UserWarning,
            stacklevel=2,
        )
        output_channel_indices = None
    # Everything is read and checked here; nothing has been written yet.
    run = stream_position(
        func,
        input_position_path,
        output_position_path,
        input_channel_indices=input_channel_indices,
        output_channel_indices=output_channel_indices,
        input_time_indices=input_time_indices,
        output_time_indices=output_time_indices,
        num_workers=num_workers,
        use_threads=use_threads,
        resume=resume,
        resume_token=resume_token,
        params=kwargs,
        transform_errors="raise",
    )
    if extra is not None:
        _write_extra_metadata(output_position_path, extra)
    counts: dict[str, int] = {}
    for result in run:
        counts[result.status] = counts.get(result.status, 0) + 1
        log.debug("%s: %s", result.label, result.status)
    if run.cancelled:
        raise CancelledRunError(f"cancelled after {sum(counts.values())} of {run.total} volumes")
    log.info(
        "finished %s: %s",
        output_position_path,
        ", ".join(f"{n} {status}" for status, n in sorted(counts.items())),
    )
