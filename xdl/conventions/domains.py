"""Where gaps may be filled: the ``domain="auto"`` rules (True = fillable).

``auto_domain`` reads what the file says, in this order, and keeps the pixels every rule allows:

1. the disk of a ``geostationary`` or ``vertical_perspective`` grid mapping (never fill space);
   the mapping is found in the Dataset, in the DataArray's coordinates, in the file named by its
   ``encoding["source"]``, or (GOES-R ``goes_imager_projection``) from the GOES-R constants
   (:mod:`xdl.conventions.projection`);
2. a land/sea mask or flag variable beside the data (CF ``standard_name`` ``land_binary_mask``,
   ``sea_binary_mask``, ``land_area_fraction``, ``sea_area_fraction``, or a flag variable whose
   ``flag_meanings`` has a land class, as GHRSST ``l2p_flags``, or a water-surface class, as the
   GOES LST ``DQF``): when (almost) all of the variable's valid values lie on one side of it, the
   other side is outside; and the variable's own CF flag codes that lie outside its valid range
   and say what lies there (sea-ice concentration's land, coast, lake and pole-hole codes; a code
   meaning only "missing" is a gap to fill: :func:`xdl.conventions.cf.own_flag_code_mask`);
3. 2-D latitude/longitude coordinates with missing values (swaths): outside where they are missing;
4. a model's ocean-grid variable (its ``cell_measures`` or CMIP ``associated_files`` name the ocean
   cell area ``areacello``): model output has no observational gaps, so every pixel no sample
   observes is land, outside.

When none of these is present, a shape rule (``static_missing``) applies: a region that no sample
ever observes and that is wide is outside: in a scene or a short series (fewer than ``SERIES`` = 4
samples) when some pixel lies ``WIDE`` = 6 or more pixels from any observed pixel and it reaches the
scene's edge (the sea around a country, the space around a reprojected disk); in a series of 4 or
more samples anywhere, from ``SERIES_WIDE`` = 3 pixels (land on a coarse grid; a dead detector line
or a dropout of up to 4 rows stays fillable), and at the scene's edge whatever its width there (land
cut by a regional grid); rows or columns missing from end to end (a dead line, a dropout of rows)
are never that. Narrow gaps (scan lines, small clouds) are never outside, except within ``REACH`` =
4 pixels of a wide region; gaps inside a single scene or a short series (clouds, holes, an outage in
both of two months) are filled. Either way a warning says how many pixels the rule left NaN.
"""

from __future__ import annotations

import re
import warnings

import dask
import numpy as np
import xarray as xr

from ..errors import XdlWarning
from . import cf
from .projection import grid_mapping, projection_disk, source_flag_variables, source_variable_attrs

# A missing region is "wide" where some pixel lies this many pixels (chessboard) from every
# observed pixel (an 11x11 square fits in it): scan lines, small clouds and the blocks of typical
# tests stay fillable.
WIDE = 6
# How far the outside region reaches into narrower gaps joined to it: the corners of a coastline
# that no wide square covers, while a scan line that meets the sea stays fillable beyond it.
REACH = 4
# A single scene's wide region is "at the edge" within this many pixels of it (through missing pixels).
EDGE = 16
# Samples from which a region missing in all of them is outside wherever it is (land in a series
# of SST fields). Two months that both miss the same interior block are no such evidence.
SERIES = 4
# A series' never-observed region is "wide" from this (a 5 x 5 square fits): land of a 5-degree
# SST grid (Australia, North America: 5-7 pixels across) is outside, while a detector's dead line
# or a scan-line dropout of up to 4 rows in every scene (the README's example: 3) stays a gap.
SERIES_WIDE = 3
# A land/sea mask restricts a variable when at most this share of its valid values lie on the
# other side (coastal pixels of a coarse mask).
_OTHER_SIDE_SHARE = 0.01


# -- land/sea masks and flags ------------------------------------------------------------------

_LAND_MEANING = re.compile(r"(^|_)land$")
_WATER_WORDS = {"water", "sea", "ocean"}


def _is_water(meaning: str) -> bool:
    """A water-surface class ("water", "invalid_due_to_water_surface_type_qf"), not land or ice."""
    words = set(meaning.split("_"))
    return bool(words & _WATER_WORDS) and not words & {"land", "ice", "inland", "contamination", "possible"}


def _flag_set(var: xr.DataArray, raw: xr.DataArray, meanings: list[str], hits: list[int]) -> xr.DataArray | None:
    """True where any of the flag meanings ``hits`` holds (CF flag_masks and/or flag_values)."""
    masks = np.atleast_1d(var.attrs["flag_masks"]) if "flag_masks" in var.attrs else None
    values = np.atleast_1d(var.attrs["flag_values"]) if "flag_values" in var.attrs else None
    if masks is not None and values is not None and len(masks) == len(values) == len(meanings):
        ints = raw.astype(np.int64)
        out = None
        for i in hits:
            if int(values[i]) == 0:
                return None  # a class that is the absence of a bit: too ambiguous to call a surface
            term = (ints & int(masks[i])) == int(values[i])
            out = term if out is None else out | term
        return out
    if masks is not None:
        if len(masks) == len(meanings):
            bits = [int(masks[i]) for i in hits]
        elif all(re.match(r"^\d+_", meanings[i]) for i in hits):
            # Numbered meanings ("1_observation_over_land", AMSR2 L2P) name the bit; their list
            # can be one longer than flag_masks (bit 15 does not fit a positive int16).
            bits = [1 << int(meanings[i].split("_", 1)[0]) for i in hits]
        else:
            return None
        return (raw.astype(np.int64) & int(np.bitwise_or.reduce(bits))) != 0
    if values is not None and len(values) == len(meanings):
        return raw.isin([values[i] for i in hits])
    return None


def _meanings(attrs: dict) -> list[str]:
    """A flag variable's ``flag_meanings``, lower case, without a leading bit number ("1_land")."""
    return [re.sub(r"^\d+_", "", m.lower()) for m in str(attrs.get("flag_meanings", "")).split()]


def _land_bit(var: xr.DataArray) -> xr.DataArray | None:
    """True on land by a flag variable: its land flag (GHRSST l2p_flags bit ``land``, a ``land``
    class of a mask), or the complement of its water-surface flag (GOES LST DQF); else None."""
    meanings = _meanings(var.attrs)
    numbered = str(var.attrs.get("flag_meanings", "")).split()
    if not meanings or ("flag_masks" not in var.attrs and "flag_values" not in var.attrs):
        return None
    raw = var.fillna(0) if np.issubdtype(var.dtype, np.floating) else var
    land = [i for i, m in enumerate(meanings) if _LAND_MEANING.search(m)]
    if land:
        return _flag_set(var, raw, numbered, land)
    water = [i for i, m in enumerate(meanings) if _is_water(m)]
    if water:
        found = _flag_set(var, raw, numbered, water)
        return None if found is None else ~found
    return None


def _land(var: xr.DataArray) -> xr.DataArray | None:
    """True on land for a recognised land/sea mask or flag variable, else None."""
    std = var.attrs.get("standard_name")
    if std in ("land_binary_mask", "sea_binary_mask", "land_area_fraction", "sea_area_fraction"):
        values = var.astype(np.float64)
        if std.endswith("fraction") and str(var.attrs.get("units", "")).strip() == "%":
            values = values / 100.0
        on = values.fillna(0.0) >= 0.5
        return on if std.startswith("land") else ~on
    return _land_bit(var)


def _warn_flags_left_behind(arr: xr.DataArray, found: set) -> None:
    """Warn when ``arr`` (filled as a DataArray) names an ancillary flag variable with land or water
    classes (read from its file's attributes) that it does not carry, or its file holds one on its
    dims: the Dataset's fill keeps those pixels NaN, the DataArray's cannot see them (GOES LST
    water was filled; AMSR2 SST, which names no flags, over every land pixel of its swath: probe)."""
    named = str(arr.attrs.get("ancillary_variables", "")).split()
    in_file = source_flag_variables(arr)
    beside = [n for n, (dims, _) in in_file.items() if n not in named and n != arr.name and dims
              and set(dims) <= set(arr.dims) and len(dims) >= 2]
    for name in named + beside:
        if name in arr.coords or name in found:
            continue
        attrs = in_file[name][1] if name in in_file else source_variable_attrs(arr, name) or {}
        if any(_LAND_MEANING.search(m) or _is_water(m) for m in _meanings(attrs)):
            what = (f"names the flag variable {name!r}, whose land/water classes mark" if name in named else
                    f"comes from a file whose flag variable {name!r} has land/water classes that mark")
            warnings.warn(f"{arr.name!r} {what} pixels never to fill, but a DataArray does not carry it: "
                          "domain='auto' cannot read it. Fill "
                          f"the Dataset instead (ds.dl.inpaint(variables=[{str(arr.name)!r}])), keep the flags as "
                          f"a coordinate (da.assign_coords({name}=ds[{name!r}])), or pass domain=.",
                          XdlWarning, stacklevel=4)


def surface_masks(obj, arr: xr.DataArray, spatial) -> list[tuple[str, xr.DataArray]]:
    """(name, land) for each land/sea mask or flag variable on ``arr``'s grid in ``obj``."""
    pool = dict(arr.coords) if isinstance(obj, xr.DataArray) else {**dict(obj.coords), **dict(obj.data_vars)}
    found = []
    for name, var in pool.items():
        if name == arr.name or not set(spatial) <= set(var.dims) or not set(var.dims) <= set(arr.dims):
            continue
        if any(var.sizes[d] != arr.sizes[d] for d in var.dims):
            continue
        land = _land(xr.DataArray(var))
        if land is not None:
            found.append((str(name), land))
    return found


# -- swaths and the shape rule -----------------------------------------------------------------

def _latlon(arr: xr.DataArray, spatial) -> list[xr.DataArray]:
    out = []
    for name, coord in arr.coords.items():
        if coord.ndim == 2 and set(coord.dims) == set(spatial) and (
                coord.attrs.get("standard_name") in ("latitude", "longitude")
                or str(name).lower() in ("lat", "latitude", "lon", "longitude", "nav_lat", "nav_lon")):
            out.append(xr.DataArray(coord))
    return out


def swath_footprint(arr: xr.DataArray, spatial) -> xr.DataArray | None:
    """True where ``arr``'s 2-D latitude and longitude are valid (CF rules); None when they are
    complete (or absent): outside a swath, or a subset's border, they are missing."""
    coords = _latlon(arr, spatial)
    if not coords:
        return None
    ok = None
    for coord in coords:
        valid = cf.cf_valid_mask(coord)
        ok = valid if ok is None else ok & valid
    ok = ok.compute().drop_vars([c for c in ok.coords if c not in ok.dims])
    if bool(ok.all()):
        return None
    return ok.transpose(*spatial).rename("swath_footprint")


def static_missing(observed: np.ndarray, samples: int, wide: int | None = None, reach: int = REACH) -> np.ndarray:
    """True where a 2-D scene's never-observed pixels form a wide outside region (module docstring).

    ``observed``: True where any sample has a valid value; ``samples``: how many samples (time
    steps...) it summarises. The wide part of the missing region is the union of the
    ``(2 wide - 1)``-pixel squares that fit in it (``wide``: :data:`SERIES_WIDE` for a series of
    :data:`SERIES` samples or more, else :data:`WIDE`). Its pieces are outside when ``samples >=``
    :data:`SERIES`, or else when they lie within ``EDGE`` pixels of the scene's edge through
    missing pixels (a coastline reaching the edge of a coarse grid in a thin strip; a scan line that joins an
    interior hole to the edge is too long for that). The outside reaches ``reach`` pixels into
    narrower gaps joined to it (the corners of a coastline): a scan line meeting the sea stays
    fillable beyond that.
    """
    from scipy import ndimage

    missing = ~np.asarray(observed, dtype=bool)
    if wide is None:
        wide = SERIES_WIDE if samples >= SERIES else WIDE
    if not missing.any() or missing.all():
        return np.zeros(missing.shape, bool)  # nothing observed at all: no evidence of a shape
    # In a scene, rows (columns) missing from end to end with observed ones on both sides are a
    # dropout (a VIIRS scan of 16 lines: 16,000 pixels left NaN as "at the edge"; probe), not sea:
    # they neither are wide nor make the gaps beside them so.
    dropout = _interior_lines(missing) if samples < SERIES else np.zeros(missing.shape, bool)
    # Distances to the nearest observed pixel, the scene's edge counting as observed: a region is
    # wide in itself (an 11 x 11 square fits in it), not because the scene stops.
    padded = np.pad(missing & ~dropout, 1, constant_values=False)
    core = ndimage.distance_transform_cdt(padded, metric="chessboard")[1:-1, 1:-1] >= wide
    if not core.any() and samples < SERIES:
        return np.zeros(missing.shape, bool)
    square = np.ones((2 * wide - 1, 2 * wide - 1), bool)
    wide_part = ndimage.binary_dilation(core, structure=square) & missing & ~dropout
    eight = np.ones((3, 3), bool)
    if samples < SERIES:
        ring = np.zeros(missing.shape, bool)
        ring[0], ring[-1], ring[:, 0], ring[:, -1] = True, True, True, True
        near_edge = ndimage.binary_dilation(ring & missing & ~dropout, structure=eight, iterations=EDGE, mask=missing)
        labels, _ = ndimage.label(wide_part, structure=eight)
        keep = np.unique(labels[near_edge & wide_part])
        wide_part = np.isin(labels, keep[keep > 0])
        if not wide_part.any():
            return wide_part
    else:
        wide_part = wide_part | _at_the_edge(missing)
    if reach <= 0 or not wide_part.any():
        return wide_part
    return ndimage.binary_dilation(wide_part, structure=eight, iterations=reach, mask=missing)


def _interior_lines(missing: np.ndarray) -> np.ndarray:
    """A dropout inside the scene: runs of at most ``2 EDGE`` rows (columns) missing from end to
    end with, within 3 rows (columns) on each side, one observed across 90% of the scene or more:
    a straight cut through the data (a VIIRS scan, 18 lines with the bow-tie rows beside it), not a
    coast. Land or sea crossing a regional crop has a coastline beside it (Anatolia in a crop of
    the sea-surface height grid: filled when any observed pixel nearby sufficed; review)."""
    from scipy import ndimage

    out = np.zeros(missing.shape, bool)
    for view, hits in ((missing, out), (missing.T, out.T)):
        full = view.all(axis=1)
        clean = (~view).mean(axis=1) >= 0.9
        for (run,) in ndimage.find_objects(ndimage.label(full)[0]):
            start, stop = run.start, run.stop
            # 2 EDGE: a VIIRS scan of 16 lines joined by the bow-tie rows beside it is 18 lines.
            if (start > 0 and stop < full.size and stop - start <= 2 * EDGE
                    and clean[max(start - 3, 0):start].any() and clean[stop:stop + 3].any()):
                hits[run] = True
    return out


def _at_the_edge(missing: np.ndarray) -> np.ndarray:
    """In a series: the never-observed regions that touch the scene's edge, whatever their width
    in the scene (land cut by a regional grid: Asia in a 5-degree Pacific SST series is 3-6 pixels
    from the edge, and was filled). Rows and columns missing from end to end (a dead detector
    line, a dropout of rows in every scene) are no such region, nor do they join others to the
    edge: they stay gaps (within ``REACH`` of a wide region excepted, as before)."""
    from scipy import ndimage

    lines = missing.all(axis=1)[:, None] | missing.all(axis=0)[None, :]
    labels, _ = ndimage.label(missing & ~lines, structure=np.ones((3, 3), bool))
    h, w = missing.shape
    out = np.zeros(missing.shape, bool)
    for k, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        if rows.start == 0 or cols.start == 0 or rows.stop == h or cols.stop == w:
            out[rows, cols] |= labels[rows, cols] == k
    return out


def on_model_ocean_grid(arr: xr.DataArray) -> bool:
    """Whether ``arr`` says it is model output on an ocean-only grid (CF ``cell_measures`` or CMIP
    ``associated_files`` naming ``areacello``): its missing pixels are land, not gaps."""
    text = f"{arr.attrs.get('cell_measures', '')} {arr.attrs.get('associated_files', '')}"
    return re.search(r"\bareacello\b", text) is not None


def _spatial_dims(arr, dims):
    from ..errors import InputError
    from .layout import spatial_dims

    try:
        return spatial_dims(arr, dims)
    except InputError:
        return None


def auto_domain(obj, arr: xr.DataArray | None = None, *, valid: xr.DataArray | None = None,
                dims=None) -> xr.DataArray | None:
    """The ``domain="auto"`` of variable ``arr`` in ``obj`` (a Dataset, or ``arr`` itself): True
    where gaps may be filled, None for everywhere. The rules are in this module's docstring.

    ``valid``: ``arr``'s valid mask (default: CF rules). For a Dataset without ``arr``, only the
    projection's disk is used (it is the same for every variable).
    """
    if arr is None:
        if isinstance(obj, xr.DataArray):
            arr = obj
        else:
            attrs = grid_mapping(obj)
            candidates = [v for v in obj.data_vars.values() if v.ndim >= 2]
            for v in candidates:
                spatial = _spatial_dims(v, dims)
                if attrs and spatial:
                    try:
                        disk = projection_disk(v, attrs, *spatial)
                    except Exception:  # noqa: BLE001 - a variable without usable coords: try the next
                        disk = None
                    if disk is not None:
                        return disk
            return None
    spatial = _spatial_dims(arr, dims)
    if spatial is None:
        return None
    terms = []
    attrs = grid_mapping(obj, arr, warn=True)
    if attrs is not None:
        disk = projection_disk(arr, attrs, *spatial)
        if disk is not None:
            terms.append(disk)
    coded = cf.own_flag_code_mask(arr, surfaces_only=True)  # sea-ice land and coast codes were filled (probe)
    if coded is not None:
        terms.append(~coded)
    if valid is None:
        valid = cf.cf_valid_mask(arr)
    masks = surface_masks(obj, arr, spatial)
    if isinstance(obj, xr.DataArray):
        _warn_flags_left_behind(arr, {name for name, _ in masks})
    if masks:
        counts = dask.compute(valid.sum(), *[(valid & land).sum() for _, land in masks],
                              *[(valid & ~land).sum() for _, land in masks])
        total, on_land, at_sea = int(counts[0]), counts[1:1 + len(masks)], counts[1 + len(masks):]
        for (name, land), n_land, n_sea in zip(masks, on_land, at_sea):
            if total == 0:
                continue
            if int(n_land) <= _OTHER_SIDE_SHARE * total:
                terms.append(~land)  # the variable lives at sea: land is outside
            elif int(n_sea) <= _OTHER_SIDE_SHARE * total:
                terms.append(land)
    footprint = swath_footprint(arr, spatial)
    if footprint is not None:
        terms.append(footprint)
    if not terms and not masks:
        other = [d for d in valid.dims if d not in spatial]
        observed = valid.any(dim=other) if other else valid
        observed = np.asarray(dask.compute(observed.transpose(*spatial).data)[0], dtype=bool)
        samples = int(np.prod([valid.sizes[d] for d in other])) if other else 1
        ocean_model = on_model_ocean_grid(arr)
        outside = ~observed if ocean_model else static_missing(observed, samples)
        if outside.any() and not ocean_model:
            # The shape rule is a guess (a saturated cloud at the edge looks like sea): say what it did.
            where = ("in wide regions that reach the scene's edge are taken for sea or space" if samples < SERIES
                     else f"in regions that none of its {samples} samples observes (wide ones, or at the scene's "
                          "edge) are taken for land, sea or space")
            count = f"{int(outside.sum())} missing pixels" + (" (in each sample)" if samples > 1 else "")
            warnings.warn(f"domain='auto': {count} of {arr.name!r} {where} and stay "
                          "NaN (flag 3, outside_fill_domain); pass domain=None to fill them, or a domain of your own.",
                          XdlWarning, stacklevel=2)
        if outside.any() and ocean_model and samples < SERIES:
            # Every missing pixel is land there: in one step or a few, gaps of the user's own are
            # too, and nothing is ever filled (probe: 743 ocean gaps of a tos step, flag 3, silently).
            warnings.warn(f"domain='auto': {arr.name!r} is a model's ocean-grid output (areacello), so every pixel "
                          f"none of its {samples} sample(s) observes ({int(outside.sum())}) is taken for land and stays "
                          "NaN (flag 3); gaps of your own there are too. Pass domain= your sea mask (e.g. "
                          "ds.areacello > 0 or a complete step's notnull()), or domain=None to fill everywhere.",
                          XdlWarning, stacklevel=2)
        if outside.any():
            coords = {d: arr[d] for d in spatial if d in arr.coords}
            terms.append(xr.DataArray(~outside, dims=spatial, coords=coords, name="observed_region"))
    if not terms:
        return None
    domain = terms[0]
    for term in terms[1:]:
        domain = domain & term
    return domain.rename("domain")
