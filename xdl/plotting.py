"""Figures xdl draws: map panels shared by every figure (evaluate's scores, the demo) and
evaluate's own figure (fills, errors, the model's sigma and its reliability curve).

matplotlib's object API only (no pyplot): no global backend state, works headless.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["draw_panels", "image_origin", "evaluation_figure"]

LEVELS = np.arange(1, 10) / 10  # nominal coverage levels of the reliability curve


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


def image_origin(arr) -> str:
    """imshow's origin for a DataArray with the row dim second last: "lower" when the row
    coordinate ascends (south at the bottom of a map of ascending latitude), "upper" otherwise
    (image order: descending y, GOES scan angles).

    >>> import xarray as xr
    >>> image_origin(xr.DataArray(np.zeros((2, 3)), dims=("lat", "lon"), coords={"lat": [-10.0, 10.0]}))
    'lower'
    """
    ydim = arr.dims[-2]
    if ydim in arr.coords and arr.sizes[ydim] > 1:
        y = np.asarray(arr[ydim].values)
        if np.issubdtype(y.dtype, np.number) and y[-1] > y[0]:
            return "lower"
    return "upper"


def _reliability_panel(ax, truth, fill, sigma, hidden, fontsize) -> None:
    """Observed vs nominal coverage of the central Gaussian intervals (all samples)."""
    from .metrics import reliability

    observed = reliability(truth, fill, sigma, hidden, levels=LEVELS)
    ax.plot([0, 100], [0, 100], color="0.6", lw=1, ls="--", label="calibrated")
    ax.plot(100 * LEVELS, 100 * observed, "o-", color="C3", label="model")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_aspect("equal")
    ax.set_xlabel("expected coverage (%)", fontsize=fontsize)
    ax.set_ylabel("observed coverage (%)", fontsize=fontsize)
    ax.set_title("model sigma: reliability", fontsize=fontsize)
    ax.legend(fontsize=fontsize - 1, loc="upper left")


def figure_path(path) -> Path:
    """The file a figure asked for as ``path`` is written to: ``.png`` added where it has no suffix
    (matplotlib would add it, and a check of ``path`` itself would miss the file it replaces); an
    :class:`~xdl.errors.InputError` for a format matplotlib cannot write, before any work is done.

    >>> figure_path("fig").name, figure_path("out/fig.pdf").name
    ('fig.png', 'fig.pdf')
    """
    from matplotlib.backend_bases import FigureCanvasBase

    from .errors import InputError

    path = Path(path)
    if not path.suffix:
        return path.with_name(path.name + ".png")
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise InputError(f"plot {str(path)!r}: matplotlib cannot write {path.suffix!r} files; end the name in one of "
                         f"{', '.join('.' + f for f in sorted(formats))}.")
    return path


def evaluation_figure(path, title, label, truth, keep, hidden, fills, sigma=None, origin="upper",
                      sigma_of="model", sample_dims=None, eligible=None) -> Path:
    """Truth | gaps | each method's fill on the top row, errors on the hidden pixels below; with
    ``sigma`` (that of the method ``sigma_of``, same shape as ``truth``) a last column: its map on the hidden pixels and
    the reliability curve (observed vs expected coverage at 10..90%, scored on every sample).
    Maps show the middle sample (the first one of a series lacks the step before it, which a
    ``time_window`` fill reads: its map disagreed with the table; probe); the share hidden is of
    the ``eligible`` pixels (valid, inside the domain) where given. Returns ``path``."""
    from matplotlib.figure import Figure

    path = Path(path)
    leading = truth.shape[:-2]
    sample = tuple(int(i) for i in np.unravel_index(int(np.prod(leading, dtype=int)) // 2, leading)) if leading else ()
    t, k, h = truth[sample], keep[sample], hidden[sample]
    # The share of the valid pixels (inside the domain, ``eligible``, when given), as the table
    # counts it (not of all pixels: "2%" beside 9.8%; not of the land too: "6%" beside 20%).
    pool = np.isfinite(t) if eligible is None else eligible[sample]
    share = h.sum() / max(int(pool.sum()), 1)
    names = list(sample_dims) if sample_dims is not None and len(sample_dims) == len(sample) else None
    shown = ", ".join(f"{d}={i}" for d, i in zip(names, sample)) if names else ", ".join(map(str, sample))
    finite = t[np.isfinite(t)]
    vmin, vmax = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    errors = {m: np.where(h, f[sample] - t, np.nan) for m, f in fills.items()}
    emax = max([np.nanmax(np.abs(e)) for e in errors.values() if np.isfinite(e).any()] or [1.0]) or 1.0
    ncol = 1 + len(fills) + (sigma is not None)
    fig = Figure(figsize=(3.6 * ncol, 6.4), layout="constrained")
    axes = fig.subplots(2, ncol, squeeze=False)
    panels = [(axes[0, 0], t, "truth", "viridis", vmin, vmax),
              (axes[1, 0], np.where(k, t, np.nan), f"input, {label} gaps\n({share:.0%} of valid hidden)",
               "viridis", vmin, vmax)]
    for j, (m, f) in enumerate(fills.items(), start=1):
        e = errors[m]
        rmse = float(np.sqrt(np.nanmean(e ** 2))) if np.isfinite(e).any() else np.nan
        panels.append((axes[0, j], f[sample], f"{m}: filled", "viridis", vmin, vmax))
        panels.append((axes[1, j], e, f"{m}: error, {shown + ' ' if sample else ''}RMSE {rmse:.3g}", "RdBu_r", -emax, emax))
    if sigma is not None:
        s = np.where(h, sigma[sample], np.nan)
        smax = float(np.nanmax(s)) if np.isfinite(s).any() else 1.0
        panels.append((axes[0, -1], s, f"{sigma_of}: sigma on the hidden pixels", "magma", 0.0, smax or 1.0))
        _reliability_panel(axes[1, -1], truth, fills[sigma_of], sigma, hidden, 9)
    draw_panels(fig, panels, origin=origin, fontsize=9)
    lead = "" if truth.ndim == 2 else f" (maps: sample {shown}; the table scores every sample)"
    fig.suptitle(f"{title}: gap filling on hidden valid pixels{lead}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
