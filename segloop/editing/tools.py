"""The editing tools of the Segment page, named once, with what each one does in plain words."""

from __future__ import annotations

from enum import StrEnum


class Tool(StrEnum):
    """A correction tool; the value is what the page shows.

    A `StrEnum`, so members compare equal to their text (``Tool.BOX == "box"``).
    See `HELP` for what each one does.
    """

    BOX = "box"
    LASSO = "lasso"
    BRUSH = "brush"
    FLOOD_FILL = "flood fill"
    DELETE_COMPONENT = "delete component"


#: Tools that act on a dragged outline (Plotly box/lasso selection).
OUTLINE_TOOLS = (Tool.BOX, Tool.LASSO)
#: Tools that act on one clicked pixel (a selectable point layer).
CLICK_TOOLS = (Tool.FLOOD_FILL, Tool.DELETE_COMPONENT)

HELP = {
    Tool.BOX: "Drag a box on any slice to fill it with the label (or erase it).",
    Tool.LASSO: "Draw a lasso outline on any slice to fill it (or erase it).",
    Tool.BRUSH: "Paint on the slice below; each stroke is applied when you release the mouse.",
    Tool.FLOOD_FILL: "Click a pixel: its connected region on that slice takes the label.",
    Tool.DELETE_COMPONENT: "Click a labelled pixel: its whole 3D connected piece is erased.",
}
