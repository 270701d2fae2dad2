"""Map panels drawn the same way by every figure xdl makes (evaluate's scores, the demo).

matplotlib's object API only (no pyplot): no global backend state, works headless.
"""

from __future__ import annotations


def draw_panels(fig, panels, *, origin: str, fontsize: int, label: str | None = None) -> None:
    """Draw ``panels`` = [(axes, image, title, cmap, vmin, vmax), ...] as maps with a colour bar each.

    ``origin``: imshow's, "lower" when row 0 is the south edge (ascending latitude or northing).
    """
    for ax, img, title, cmap, lo, hi in panels:
        im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest", origin=origin)
        ax.set_title(title, fontsize=fontsize)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8, label=label)
