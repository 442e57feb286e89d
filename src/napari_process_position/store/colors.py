"""The one table of channel colours: written into OMERO metadata and shown by napari.

Channel ``i`` of ``n`` gets the same colour in an output's ``omero`` metadata,
in the widget's layers, in the reader's layers and in the sample data: green,
magenta, cyan, yellow, red, blue, in turn; a single channel is grey (white).
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ChannelColor", "channel_color"]


class ChannelColor(NamedTuple):
    """A channel's colour, as napari names its colormap and as OMERO writes it."""

    colormap: str
    hex: str


_CYCLE = (
    ChannelColor("green", "00FF00"),
    ChannelColor("magenta", "FF00FF"),
    ChannelColor("cyan", "00FFFF"),
    ChannelColor("yellow", "FFFF00"),
    ChannelColor("red", "FF0000"),
    ChannelColor("blue", "0000FF"),
)
_SINGLE = ChannelColor("gray", "FFFFFF")


def channel_color(index: int, n_channels: int) -> ChannelColor:
    """Return the colour of channel ``index`` of ``n_channels``.

    Examples
    --------
    >>> channel_color(0, 2).colormap, channel_color(1, 2).hex
    ('green', 'FF00FF')
    >>> channel_color(0, 1).colormap
    'gray'
    """
    return _SINGLE if n_channels == 1 else _CYCLE[index % len(_CYCLE)]
