"""The widget's napari layers: finding them, making or refitting one, and their time axis.

Plain functions of the viewer, each one layer operation, called on the main
thread by the layer sink (:mod:`.sink`), which decides when. Input layers
carry ``{"role": "input", "path", "channel", "times"}`` in their metadata,
output layers ``{"role": "output", "output", "channel", "input"}`` (under
:data:`.helpers.METADATA_KEY`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_process_position.store.colors import channel_color
from napari_process_position.store.layout import OutputLayout, PositionInfo
from napari_process_position.widget.contrast import input_limits
from napari_process_position.widget.multiscale import channel_data
from napari_process_position.widget.ports import OutputLayers

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

__all__ = [
    "METADATA_KEY",
    "Outputs",
    "existing_outputs",
    "find_input",
    "has",
    "input_layers",
    "input_time",
    "layer_meta",
    "move_to",
    "new_outputs",
    "output_layers",
    "output_names",
    "remove",
    "reusable_outputs",
    "set_input",
    "set_output",
    "shown_input",
    "time_axis",
    "time_on_screen",
]

#: Marks the layers this widget made, in ``layer.metadata``.
METADATA_KEY = "napari_process_position"


def layer_meta(layer: Any) -> dict[str, Any]:
    """Return what this widget recorded about a layer (empty for other layers)."""
    return (getattr(layer, "metadata", None) or {}).get(METADATA_KEY) or {}


#: The output layers of one run or preview, as napari Image layers.
Outputs = OutputLayers["Image"]


def tzyx(values: tuple[float, ...]) -> tuple[float, ...]:
    """Return the (t, z, y, x) entries of per-axis TCZYX ``values`` (a scale, a translation)."""
    return (values[0], *values[2:])


def has(viewer: napari.viewer.Viewer, layer: Image) -> bool:
    """Tell whether ``layer`` is in the viewer (by id: a plugin sees layers through proxies)."""
    return any(other.unique_id == layer.unique_id for other in viewer.layers)


def remove(viewer: napari.viewer.Viewer, layer: Image) -> None:
    """Remove ``layer`` if it is still in the viewer."""
    if has(viewer, layer):
        viewer.layers.remove(layer)


def input_layers(viewer: napari.viewer.Viewer) -> list[Image]:
    """Return the input layers, by channel."""
    found = [layer for layer in viewer.layers if layer_meta(layer).get("role") == "input"]
    return sorted(found, key=lambda layer: layer_meta(layer).get("channel", 0))


def output_layers(viewer: napari.viewer.Viewer) -> list[Image]:
    """Return the output layers, in the viewer's order."""
    return [layer for layer in viewer.layers if layer_meta(layer).get("role") == "output"]


def find_input(viewer: napari.viewer.Viewer, info: PositionInfo, name: str) -> Image | None:
    """Find the input layer of that name, or a sample-data layer of that channel."""
    from napari_process_position.widget.sample_data import SOURCE_KEY

    for layer in viewer.layers:
        meta = layer_meta(layer)
        if layer.name == name and meta.get("role") == "input" and meta.get("path") == info.path:
            return layer  # type: ignore[no-any-return]
    for layer in viewer.layers:
        source = (layer.metadata or {}).get(SOURCE_KEY) or {}
        same = source and Path(source["store"], source["position"]) == Path(info.path)
        if same and layer.name == name:
            return layer  # type: ignore[no-any-return]
    return None


def shown_input(
    viewer: napari.viewer.Viewer, info: PositionInfo, channels: list[int]
) -> Image | None:
    """Return the first input layer that shows one of ``channels`` of ``info`` (None: none)."""
    found = (find_input(viewer, info, info.channel_names[c]) for c in channels)
    return next((layer for layer in found if layer is not None), None)


def input_time(viewer: napari.viewer.Viewer, layer: Image) -> int:
    """Return the input time point that input ``layer`` shows (it may show some of them)."""
    index = time_on_screen(viewer, layer)
    shown_times = layer_meta(layer).get("times")
    return int(shown_times[index]) if shown_times else index


def set_input(
    viewer: napari.viewer.Viewer,
    info: PositionInfo,
    c: int,
    name: str,
    meta: dict[str, Any],
    layer: Image | None,
    clim: tuple[float, float] | None,
) -> None:
    """Show channel ``c`` of ``info`` in ``layer`` (refitted), or in a new layer.

    A position with resolution levels is shown as a multiscale layer; a layer
    whose multiscale-ness differs is replaced (napari cannot change it).
    """
    data = channel_data(info, c, meta["times"])
    if clim is None and (layer is None or layer_meta(layer).get("path") != info.path):
        clim = input_limits(info, [c], 0).get(c, (0.0, 1.0))
    scale, translate = (tzyx(values) for values in info.world())
    layer = _same_kind(viewer, layer, data)
    if layer is None:
        viewer.add_image(
            data,
            multiscale=isinstance(data, list),
            name=name,
            scale=scale,
            translate=translate,
            contrast_limits=clim,
            metadata={METADATA_KEY: meta},
            colormap=channel_color(c, info.shape[1]).colormap,
            blending="additive",
            axis_labels=("t", "z", "y", "x"),
            # Point slices (not napari's default one-plane "mean" slab): the cached planes
            # serve them, and no projection is computed per redraw.
            projection_mode="none",
        )
        return
    layer.metadata = {**layer.metadata, METADATA_KEY: meta}
    layer.name = name
    if str(layer.projection_mode) != "none":  # (a sample-data layer, say)
        layer.projection_mode = "none"
    layer.data = data
    if not np.allclose(layer.scale, scale):
        layer.scale = scale
    if not np.allclose(layer.translate, translate):
        layer.translate = translate
    if clim is not None:
        layer.contrast_limits_range = clim
        layer.contrast_limits = clim


def output_names(layout: OutputLayout, display: str) -> list[str]:
    """Return the output layers' names: ``<channel> [<transform>]``."""
    return [f"{channel} [{display}]" for channel in layout.channel_names]


def new_outputs(
    layout: OutputLayout,
    display: str,
    output: str | None,
    source: str,
    store: PositionInfo | None,
) -> Outputs:
    """Return the record of a run's or preview's output layers, none made yet."""
    names = output_names(layout, display)
    meta = [
        {"role": "output", "output": output, "channel": i, "input": source}
        for i in range(len(names))
    ]
    scale, translate = (tzyx(values) for values in layout.world())
    return Outputs(
        names,
        (layout.shape[0], *layout.shape[2:]),
        np.dtype(layout.dtype),
        scale,
        meta,
        [None] * len(names),
        translate=translate,
        store=store,
    )


def reusable_outputs(
    viewer: napari.viewer.Viewer, names: list[str], multiscale: bool = False
) -> tuple[list[Image | None], list[Image]]:
    """Pick an existing output layer for each name (same name first), and those left over.

    Only layers that are ``multiscale`` (or not) are reused, as napari cannot
    change it; the others are left over (to remove before new layers take their names).
    """
    outputs = [layer for layer in viewer.layers if layer_meta(layer).get("role") == "output"]
    existing = sorted(
        (layer for layer in outputs if bool(layer.multiscale) == multiscale),
        key=lambda layer: (layer.name not in names, layer_meta(layer).get("channel", 0)),
    )
    by_name = {layer.name: layer for layer in existing}
    spare = [layer for layer in existing if layer.name not in names]
    reused = [by_name.get(name) or (spare.pop(0) if spare else None) for name in names]
    return reused, [layer for layer in outputs if bool(layer.multiscale) != multiscale] + spare


def set_output(viewer: napari.viewer.Viewer, outputs: Outputs, i: int, layer: Image | None) -> None:
    """Make output ``i`` of ``outputs``: refit ``layer`` (renamed, new data) or add one.

    Over a store, the data is a lazy view of channel ``i`` of the output array
    (it costs what is on screen), multiscale when the store has levels; without
    one, zeros in memory that the volumes fill.
    """
    data: Any
    if outputs.store is not None:
        data = channel_data(outputs.store, i, None)
    else:
        data = np.zeros(outputs.shape, outputs.dtype)  # calloc: pages appear as volumes do
    meta = {METADATA_KEY: outputs.meta[i]}
    layer = _same_kind(viewer, layer, data)
    if layer is None:
        layer = viewer.add_image(
            data,
            multiscale=isinstance(data, list),
            name=outputs.names[i],
            scale=outputs.scale,
            translate=outputs.translate,
            contrast_limits=(0.0, 1.0),
            metadata=meta,
            colormap=channel_color(i, len(outputs.names)).colormap,
            blending="additive",
            axis_labels=("t", "z", "y", "x"),
            projection_mode="none",
        )
    else:
        layer.name = outputs.names[i]
        if layer.metadata.get(METADATA_KEY) != meta[METADATA_KEY]:
            layer.metadata = meta
        if not np.allclose(layer.scale, outputs.scale):
            layer.scale = outputs.scale
        if not np.allclose(layer.translate, outputs.translate):
            layer.translate = outputs.translate
        layer.data = data  # the previous run's array is released
        colormap = channel_color(i, len(outputs.names)).colormap
        if layer.colormap.name != colormap:  # (a new colormap costs a shader build)
            layer.colormap = colormap
    outputs.layers[i] = layer


def _same_kind(viewer: napari.viewer.Viewer, layer: Image | None, data: Any) -> Image | None:
    """Return ``layer`` if it is in the viewer and can take ``data``, else None (it is removed).

    napari cannot turn a layer multiscale or back: such a layer is replaced.
    """
    if layer is None or not has(viewer, layer):
        return None
    if bool(layer.multiscale) != isinstance(data, list):
        viewer.layers.remove(layer)
        return None
    return layer


def existing_outputs(
    viewer: napari.viewer.Viewer, layout: OutputLayout, display: str, source: str
) -> Outputs | None:
    """Return the output layers of this layout and input if all exist (shape and dtype)."""
    shape = (layout.shape[0], *layout.shape[2:])
    names = output_names(layout, display)
    by_name: dict[str, Image] = {}
    for layer in output_layers(viewer):
        by_name.setdefault(layer.name, layer)
    layers = []
    for name in names:
        layer = by_name.get(name)
        if (
            layer is None
            or layer_meta(layer).get("input") != source
            or layer.data.shape != shape
            or np.dtype(layer.data.dtype) != np.dtype(layout.dtype)
        ):
            return None
        layers.append(layer)
    return Outputs(
        names,
        shape,
        np.dtype(layout.dtype),
        tzyx(layout.world()[0]),
        [layer_meta(layer) for layer in layers],
        layers,
        translate=tzyx(layout.world()[1]),
    )


def time_axis(viewer: napari.viewer.Viewer, layer: Image) -> int:
    """Return the viewer's axis that is ``layer``'s time axis."""
    return int(viewer.dims.ndim - layer.ndim)


def time_on_screen(viewer: napari.viewer.Viewer, layer: Image) -> int:
    """Return the index of ``layer``'s first axis that the time slider shows."""
    world_t = viewer.dims.point[time_axis(viewer, layer)]
    shown = round((world_t - layer.translate[0]) / (layer.scale[0] or 1.0))
    return int(min(max(shown, 0), layer.data.shape[0] - 1))


def move_to(viewer: napari.viewer.Viewer, layer: Image, t: int) -> None:
    """Move the time slider to index ``t`` of ``layer``'s first axis."""
    axis = time_axis(viewer, layer)
    world_t = layer.scale[0] * t + layer.translate[0]
    step = viewer.dims.range[axis].step or 1.0
    start = viewer.dims.range[axis].start
    viewer.dims.set_current_step(axis, round((world_t - start) / step))
