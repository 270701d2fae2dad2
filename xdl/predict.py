"""``predict``: any model over any xarray object, streamed chunk by chunk. The xarray layer:
it arranges variables into channels, normalises (:mod:`xdl.normalize`), calls the dask graph
(:mod:`xdl.engine`) and puts the result back with the input's coordinates, attributes and grid mapping."""

from __future__ import annotations


import dask.array as da
import numpy as np
import xarray as xr

from . import normalize, uncertainty
from .conventions import cf, layout, projection
from .engine import tiling
from .dask_wrap import as_dask
from .errors import InputError
from .engine.graph import TILES_ALL, apply_model, insert_axis, payload_for, take_index
from .engine.options import RunOptions, check_halo
from .engine.spec import EngineSpec, engine_spec
from .models.resolve import model_key, model_label, resolve_model

CHANNEL = "__xdl_channel__"
# The input's attributes a model's output keeps unless it fills gaps: where the values lie, true
# of any output (the others describe the input's values: units, names, GRIB_name, ranges).
_PLACE_ATTRS = {"grid_mapping", "coordinates"}
# Pixels (times channels) per model call. On CPUs one tile at a time is fastest (measured:
# a 5M-parameter UNet on 576x576 tiles ran 0.40 Mpix/s in batches of 1, 0.17 in batches of 6,
# as activations fall out of cache); a GPU wants big batches.
_BATCH_BUDGET = {"cpu": 2 ** 18, "cuda": 2 ** 24}


def predict(obj, model, *, inputs=None, outputs=None, dims=None, device="auto", precision="auto",
            tile=None, halo=None, batch_size=None, periodic=None, progress=False, mode=None,
            channel_dim=None, compile="auto", nan_policy="propagate", threads=None):
    """Run ``model`` over ``obj`` (Dataset or DataArray), lazily when ``obj`` is dask-backed.

    Parameters
    ----------
    model : xdl.Model, torch.nn.Module, path to a ``.safetensors`` model file, or bundled name.
    inputs, outputs : variable names for the model's channels (default: from the model card; a
        one-channel model without names runs over every data variable with the spatial dims).
    dims : the spatial dims ``(y, x)`` (``(t, y, x)`` for volume models); found from CF
        attributes and usual names when omitted.
    device : "auto" (CUDA when present), "cpu", "cuda", "cuda:1".
    precision : "auto" (bf16 autocast on GPU; fp32 on CPU unless the model declares ``cpu_bf16``
        and the CPU has native bf16 instructions, as fill-unet does), "fp32", "bf16", "fp16".
    tile : largest tile side (core + halo both sides); default 512 on CPU, 1024 on GPU, or the
        model's ``min_tile`` when larger (an axis up to 1.25 x tile long is one tile).
    halo : context pixels each side of a tile; default from the model card or a receptive-field probe.
    batch_size : tiles per model call; default one on CPUs (results then never depend on the
        chunking: CPU kernels round differently for other batch sizes), on GPUs from a pixel
        budget (halved on out-of-memory). On CPUs a near-free model that takes no mask (under
        10 ms a block) runs a block as one call where the first block of that shape gave the
        same bytes both ways (checked then; not the blocks ``nan_policy="fill"`` fills first):
        the same results, without joining the tiles' outputs.
    periodic : wrap the x dim; default True for a regular longitude spanning 360 degrees.
    progress : a progress bar while xdl computes an in-memory input. A lazy result computes
        later, in your write: wrap it in ``with xdl.progress.progress_bar(): ds.to_zarr(...)``
        (threaded scheduler) or watch the distributed dashboard.
    mode : override the model's mode ("spatial", "pointwise", "volume").
    channel_dim : for a DataArray input to a multi-channel model, the dim holding the channels.
    compile : run the resident model through ``torch.compile``: "auto" (default) on CUDA, not on
        CPU; True / False. Compiled once per process, device and tile shape (the first batch
        waits for it: 13-18 s for an 11.6M-parameter PConv-UNet on an H200, which then ran 1.6x
        faster than eager); falls back to eager with a warning if compiling fails.
    nan_policy : what a model that takes no mask sees and gives where inputs are missing (NaN,
        or outside the mask); models that take a mask (``takes_mask``: fill-unet, pconv-unet, a
        UNet ``with_mask``) get the mask instead and are unaffected.
        "propagate" (default): missing inputs enter as 0 in normalised units and the output is
        NaN wherever a missing input lies within ``halo`` pixels of the output pixel. A probed
        halo (no ``halo=`` and none in the card) is the radius holding 99% of the input gradient,
        not the whole receptive field: a missing input beyond it still reaches the output as 0
        through the rest; pass ``halo=`` the receptive field where no output may depend on one.
        "fill": missing inputs first get a harmonic fill of their tile's valid values (in
        normalised units, :func:`xdl.models.harmonic.harmonic_fill`), then the model runs; the
        output is NaN only at the missing pixels themselves (unless the model fills gaps).
        Pointwise models: a point with any missing input is NaN under either policy.
    threads : CPU threads of each model call (torch intra-op threads, in the one thread that runs
        the model in each process); default: the model's ``cpu_threads`` where it declares one,
        else ``torch.get_num_threads()`` where ``predict`` is called. The same number is used in
        every process, dask.distributed workers included: CPU kernels (oneDNN convolutions) give
        results that depend on their thread count, so a fixed count is what makes threaded and
        distributed runs bit-identical. A model that declares ``cpu_threads`` 1 (many small ops,
        such as the bundled ``fill-context``) run with one thread has its calls run in the dask
        threads, several at once, instead of one at a time.
    Every option is checked before anything runs: a bad value raises :class:`~xdl.errors.InputError`.
    A model that raises, or returns something other than a tensor of the input's spatial size
    with its declared channels, raises :class:`~xdl.errors.ModelError` (found by a small probe
    call before the graph is built where possible). Output pixels where the model gave NaN or
    inf are NaN.

    Returns a Dataset (for a Dataset input) or DataArray with the input's coordinates, grid
    mapping (``grid_mapping``, ``coordinates``) and a history line; the input's other attributes
    (``units``, ``long_name``, ``valid_range``...) describe the input, not the model's output, and
    are not copied: set the output's own. A model that gives a sigma (card ``uncertainty``: it returns
    its means, then their sigmas) adds ``<out>_sigma`` per output (the standard error, in the
    output's units; a DataArray input gets them along its ``channel`` dim).

    Examples
    --------
    >>> import numpy as np, xarray as xr, torch, xdl
    >>> da_in = xr.DataArray(np.random.rand(2, 64, 64).astype("f4"), dims=("time", "y", "x"), name="t")
    >>> net = torch.nn.Conv2d(1, 1, 3, padding=1)
    >>> out = da_in.dl.predict(net)
    >>> out.dims
    ('time', 'y', 'x')
    """
    RunOptions.check(device, precision, tile, batch_size, periodic, compile, nan_policy, threads, halo)
    model = resolve_model(model)
    spec = engine_spec(model, mode, halo=check_halo(halo))
    run = RunOptions.build(spec, device, precision, tile, batch_size, periodic, compile, nan_policy, threads)
    if isinstance(obj, xr.Dataset):
        return _predict_dataset(obj, model, spec, run, inputs, outputs, dims, progress)
    if isinstance(obj, xr.DataArray):
        return _predict_dataarray(obj, model, spec, run, inputs, outputs, dims, channel_dim, progress)
    raise InputError(f"predict works on xarray Dataset or DataArray objects, not {type(obj).__name__}.")


# ---------------------------------------------------------------------------------------------
# Arranging xarray variables into a (*batch, channel, *spatial) dask array and back.

def as_float(da_in: xr.DataArray) -> xr.DataArray:
    """``da_in`` as floats: floats as they are, booleans float32, integers float64 (exact to 2**53)."""
    if np.issubdtype(da_in.dtype, np.floating):
        return da_in
    if np.issubdtype(da_in.dtype, np.bool_):
        return da_in.astype(np.float32)
    if np.issubdtype(da_in.dtype, np.integer):
        # float64, as inpaint's output of integers is: a second pass over that output then reads
        # the same values with the same (float64) statistics and gives it back (probe).
        return da_in.astype(np.float64)
    raise InputError(f"variable {da_in.name!r} has dtype {da_in.dtype}; models need numbers. "
                     "Convert or drop it (e.g. ds.drop_vars(...)).")


def cf_masked(arr: xr.DataArray) -> xr.DataArray:
    """``arr`` in float with NaN where its CF attributes say a value is missing, as ``inpaint``
    reads it: a file opened with ``mask_and_scale=False`` keeps ``_FillValue`` among the attributes,
    and GOES Rad's 1023 (space) reached the model as a radiance. ``arr`` as it is without such
    attributes (xarray has masked the encoding's ``_FillValue`` already).

    >>> raw = xr.DataArray(np.array([5, 1023, 7], "i2"), attrs={"_FillValue": 1023, "valid_range": [0, 1022]})
    >>> cf_masked(raw).values.tolist()
    [5.0, nan, 7.0]
    """
    arr = cf.unsigned_view(arr)
    if not any(k in arr.attrs for k in cf.VALIDITY_ATTRS):
        return arr
    return as_float(arr).where(cf.cf_valid_mask(arr).data)


def spatial_dims_for(template: xr.DataArray, spec: EngineSpec, dims) -> tuple[str, ...]:
    if spec.mode == "pointwise":
        return ()  # every dim is a batch of points
    if spec.mode == "volume":
        if dims is not None:
            dims = tuple(dims)
            if len(dims) != 3:
                raise InputError(f"dims={dims!r}: a volume model needs (t, y, x).")
            return dims
        yx = layout.spatial_dims(template)
        return (layout.time_dim(template, yx),) + yx
    return layout.spatial_dims(template, dims)


def stack_channels(arrays: list[xr.DataArray], spatial: tuple[str, ...]) -> xr.DataArray:
    arrays = [as_float(a) for a in arrays]
    arrays = list(xr.broadcast(*arrays)) if len(arrays) > 1 else arrays
    batch = [d for d in arrays[0].dims if d not in spatial]
    if len(arrays) == 1 and isinstance(arrays[0].data, da.Array) and arrays[0].dims == (*batch, *spatial):
        # The channel axis in place, in one layer that dask fuses into the model's.
        stacked = xr.Variable((*batch, CHANNEL, *spatial), insert_axis(arrays[0].data, len(batch)))
    else:
        stacked = (xr.Variable.concat([a.variable for a in arrays], dim=CHANNEL) if len(arrays) > 1
                   else arrays[0].variable.expand_dims(CHANNEL))
        stacked = stacked.transpose(*batch, CHANNEL, *spatial)
    coords = {k: v for k, v in arrays[0].coords.items() if set(v.dims) <= set(stacked.dims)}
    return xr.DataArray(stacked, coords=coords)


def _dask_input(x: xr.DataArray, plans, batch_size: int) -> da.Array:
    data = x.data
    if isinstance(data, da.Array):
        return data
    # In-memory input: chunk it so a block holds about one model batch of tiles.
    n_lead = x.ndim - 1 - len(plans)
    tiles_per_sample = int(np.prod([p.n_tiles for p in plans])) if plans else 1
    lead_chunk = max(1, batch_size // max(tiles_per_sample, 1))
    chunks = []
    remaining = lead_chunk
    for size in x.shape[:n_lead][::-1]:  # innermost batch dim takes the chunking first
        take = max(1, min(size, remaining))
        chunks.append(take)
        remaining = max(1, remaining // size)
    chunks = chunks[::-1] + [-1] + [max(p.stride, min(p.length, 2048 // p.stride * p.stride)) for p in plans]
    # A random key instead of hashing the whole array (tens of ms per call on a scene), and no copy.
    return as_dask(data, chunks=tuple(chunks))


def run_engine(x: xr.DataArray, model, spec: EngineSpec, run: RunOptions, spatial, names, out_names,
               tiles=TILES_ALL, *, key: str | None = None, target_channels: int | None = None,
               sigma_scale: float | None = None, standardise_like: list[int] | None = None) -> da.Array:
    """The model's output as a dask array ``(*batch, C_out, *spatial)`` for ``x`` ``(*batch, C, *spatial)``.
    ``key``: the resident copy's key (default: the model's content hash); ``target_channels``,
    ``sigma_scale``: see :func:`xdl.normalize.for_output` (context channels, sigma outputs);
    ``standardise_like``: see :func:`xdl.normalize.for_input`."""
    n_spatial = spec.n_spatial
    label = x.name if x.name is not None else ", ".join(map(str, out_names))
    empty = [d for d in x.dims if x.sizes[d] == 0]
    if empty:  # an empty selection crashed deep in dask (ZeroDivisionError, a zero-size reduction; probe)
        raise InputError(f"{label!r} is empty along {empty} (a selection that kept nothing?): there is nothing "
                         "to run the model on.")
    layout.check_coordinates(x, spatial, label)
    lengths = [x.sizes[d] for d in spatial]
    short = [d for d, n in zip(spatial, lengths) if n < 2]
    if short:
        raise InputError(f"{x.name or 'the input'} has a single pixel along {short}: a {spec.mode} model "
                         "needs neighbours. Use a pointwise model, or check dims=.")
    plans = []
    if spec.mode != "pointwise":
        periodic = run.periodic if run.periodic is not None else layout.is_periodic_longitude(x, spatial[-1])
        for i, (dim, n) in enumerate(zip(spatial, lengths)):
            plans.append(tiling.AxisPlan.build(n, halo=spec.halo, tile=run.tile, size_multiple=spec.size_multiple,
                                               periodic=bool(periodic) and i == len(spatial) - 1))
    tile_pixels = int(np.prod([p.tile_size for p in plans])) if plans else 1
    _check_padding(x, plans, tile_pixels, spec)
    budget = _BATCH_BUDGET["cuda" if run.device.type == "cuda" else "cpu"]
    batch = run.batch_size or max(1, budget // (tile_pixels * max(spec.in_channels, 1)))
    chunk_batch = batch  # tiles per in-memory block
    if run.batch_size is None and run.device.type == "cpu" and spec.mode != "pointwise":
        # One tile per model call on CPUs: as fast as batches there (see _BATCH_BUDGET), and
        # oneDNN's results depend on the batch size, so a fixed one keeps every pixel the same
        # whatever the chunking (whole series vs one time step per chunk: 273 of ERA-40's pixels
        # differed by an ulp in batches).
        batch = 1
    if spec.mode == "pointwise":
        batch = run.batch_size or 2 ** 18
    data = _dask_input(x, plans, chunk_batch)
    # The card's statistics belong to channel positions: the user may name the variables otherwise.
    norm_in = normalize.for_input(spec.normalization, card_names(spec.inputs, names), data, n_spatial,
                                  target_channels=target_channels, standardise_like=standardise_like)
    if norm_in is not None:
        marked = data
        data = norm_in.apply(data)
        if spec.takes_domain:  # gaps outside the domain (+inf) stay marked, not moved to the fence
            data = da.where(marked == np.inf, np.float32(np.inf), data)  # np.isposinf: 4x the time
    payload = payload_for(getattr(model, "module", model), key or model_key(model), model_label(model))
    out = apply_model(data, payload, spec, plans, device=run.device, autocast=run.autocast,
                      batch_size=batch, tiles=tiles, compiled=run.compile,
                      nan_policy=getattr(run, "nan_policy", "propagate"), threads=getattr(run, "threads", None))
    card_outputs = spec.outputs[:len(out_names)] if sigma_scale is not None else spec.outputs  # means first
    norm_out = normalize.for_output(spec.normalization, card_names(card_outputs, out_names), norm_in, out, n_spatial,
                                    target_channels=target_channels, sigma_scale=sigma_scale)
    if norm_out is not None:
        out = norm_out.invert(out)
    if isinstance(x.data, da.Array):
        # The engine computes on chunks aligned to the tile grid; hand back the input's own
        # chunks (regular, zarr-writable, and what the user chose), the channel axis whole.
        channel_axis = x.ndim - n_spatial - 1
        wanted = x.data.chunks[:channel_axis] + ((out.shape[channel_axis],),) + x.data.chunks[channel_axis + 1:]
        if out.chunks != wanted:
            out = out.rechunk(wanted)
    return out


def in_card_order(card: list, given: list, option: str = "variables") -> list:
    """``given`` (the variables for a model's input channels) in the order of the names its card
    was trained with: the same names in another order are put in the card's; some of them at
    other channels than the card's (``["t2m", "u10"]`` for a ``u10, v10`` model) is an
    InputError; names the card does not know are taken in order (another dataset's names, or one
    renamed in place: ``["a2", "b"]`` for ``a, b``).
    A u10, v10 model given v10, u10 filled each through the other's channel, silently (probe).

    >>> in_card_order(["u", "v"], ["v", "u"]), in_card_order(["u", "v"], ["a", "b"]), in_card_order(["u", "v"], ["a", "v"])
    (['u', 'v'], ['a', 'b'], ['a', 'v'])
    """
    card, given = list(card or []), list(given)
    if not card:  # a card without names (a plain module): the order given
        return given
    twice = sorted({str(g) for g in given if given.count(g) > 1})
    if twice and given != card:
        raise InputError(f"{option} names {twice} more than once: give each of the model's {len(given)} inputs once.")
    if len(card) != len(given) or all(g not in card or card.index(g) == i for i, g in enumerate(given)):
        return given  # the card's order, or other names, or some renamed in place (["a2", "b"] for a, b)
    if set(given) == set(card):
        return card
    raise InputError(f"the model takes {card} in that order (its card's names), and {given} puts some of them at "
                     f"other channels: pass {option}={card}, or only names the card does not know to apply it to "
                     "other variables in the order given.")


def _inputs_in_card_order(spec, given, outputs, option) -> list:
    """:func:`in_card_order` for ``predict``, refusing ``outputs=`` then: it names the model's
    output channels, which follow the card's order; given with inputs in another order, they were
    meant for that order and would be swapped (review)."""
    ordered = in_card_order(spec.inputs, given, option)
    if outputs is not None and list(given) != list(ordered):
        raise InputError(f"inputs {list(given)} are in another order than the model's card {list(ordered)}, and "
                         f"outputs={_names(outputs)} name its output channels, which follow the card's order: pass "
                         f"the inputs as {list(ordered)} with the outputs in that order.")
    return ordered


def card_names(card: list, given: list) -> list:
    """The card's names for the channels when it has one per channel, else the names given."""
    return list(card) if card and len(card) == len(given) else list(given)


def output_channel(out: da.Array, template: xr.DataArray, i: int, name=None) -> xr.DataArray:
    """Channel ``i`` of the engine's output ``out`` on the dims and coordinates of ``template``
    (the stacked input) without its channel axis: a one-channel output is the model's own dask
    layer (:func:`~xdl.engine.graph.take_index`), and the template's data are never indexed."""
    dims = tuple(d for d in template.dims if d != CHANNEL)
    coords = {k: v for k, v in template.coords.items() if CHANNEL not in v.dims}
    return xr.DataArray(take_index(out, i, template.get_axis_num(CHANNEL)), dims=dims, coords=coords, name=name)


def _output_arrays(out: da.Array, template: xr.DataArray, out_names: list, spec: EngineSpec,
                   source_for_attrs: xr.DataArray) -> list[xr.DataArray]:
    arrays = []
    keys = card_names(spec.outputs, out_names)
    for i, name in enumerate(out_names):
        arr = output_channel(out, template, i, name)
        # In the input's dim order (inpaint keeps it; predict put the spatial dims last: probe).
        arr = arr.transpose(*[d for d in source_for_attrs.dims if d in arr.dims], ...)
        attrs = {}
        if keys[i] in spec.output_units:
            attrs["units"] = spec.output_units[keys[i]]
        elif len(out_names) == 1 and "units" in source_for_attrs.attrs and spec.fills_gaps:
            attrs["units"] = source_for_attrs.attrs["units"]
        if keys[i] in spec.standard_names:
            attrs["standard_name"] = spec.standard_names[keys[i]]
        arr.attrs.update(attrs)
        cf.carry_georeferencing(source_for_attrs, arr)
        arrays.append(arr)
    return arrays


def finish(result, lazy: bool, progress: bool, only=None):
    """``result`` as the caller gets it: lazy for lazy input, else computed. ``only``: the
    variables of a Dataset to compute (those made from the input); the others stay as they came
    (a lazy context field or an unrelated variable of an opened file is not read into memory)."""
    cf.drop_packing(result)
    cf.drop_dangling_references(result)
    cf.drop_stale_storage(result)
    if lazy:
        return result
    part = result if only is None else result[list(only)]
    if progress:
        from .progress import progress_bar

        with progress_bar("predict"):
            part = part.compute()
    else:
        part = part.compute()
    if only is None:
        return part
    out = result.copy()
    for name in only:
        out[name] = part[name]
    return out


def _names(names) -> list:
    """``inputs=`` / ``outputs=`` as a list; one name may be a string (list("tcw") is three names)."""
    return [names] if isinstance(names, str) else list(names)


def _predict_dataset(ds, model, spec, run, inputs, outputs, dims, progress):
    names = _names(inputs) if inputs is not None else list(spec.inputs)
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise InputError(f"variables {missing} not in the dataset; it has {list(ds.data_vars)}. "
                         "Pass inputs=[...] naming the model's input variables.")
    groups: list[tuple[list, list]] = []
    scale = uncertainty.sigma_scale(model)  # a sigma model returns n means, then n sigmas
    n_out = uncertainty.mean_channels(spec.out_channels, scale, model_label(model))
    if names:
        if len(names) != spec.in_channels:
            raise InputError(f"the model takes {spec.in_channels} input channel(s) but {len(names)} "
                             f"variable(s) were given: {names}.")
        names = _inputs_in_card_order(spec, names, outputs, "inputs")
        out_names = _names(outputs) if outputs is not None else (list(spec.outputs)[:n_out] or None)
        if out_names is None:
            out_names = names if n_out == len(names) else [f"output_{i}" for i in range(n_out)]
        groups.append((names, out_names))
    elif spec.in_channels == 1:
        for var in eligible_variables(ds, spec, dims):
            groups.append(([var], [var] if n_out == 1 else [f"{var}_{i}" for i in range(n_out)]))
        if not groups:
            raise InputError("no data variable of the dataset has the spatial dims the model needs; "
                             "pass inputs=[...] and dims=(...).")
    else:
        raise InputError(f"the model takes {spec.in_channels} channels: name them with inputs=[...] "
                         f"(dataset variables: {list(ds.data_vars)}).")
    for _, out_names in groups:
        if len(out_names) != n_out:
            raise InputError(f"outputs={out_names} but the model returns {n_out} channel(s)"
                             f"{' (and their sigmas)' if scale is not None else ''}.")
    lazy = any(isinstance(ds[v].data, da.Array) for g in groups for v in g[0])
    result = {}
    for names_g, out_g in groups:
        arrays = [ds[n] for n in names_g]
        spatial = spatial_dims_for(arrays[0], spec, dims)
        x = stack_channels([cf_masked(a) for a in arrays], spatial)
        out = run_engine(x, model, spec, run, spatial, names_g, out_g, sigma_scale=scale)
        sigmas = [uncertainty.sigma_name(n) for n in out_g] if scale is not None else []
        pieces = _output_arrays(out, x, out_g + sigmas, spec, arrays[0])
        pieces[len(out_g):] = [uncertainty.predicted_sigma(mean, sigma, model_label(model))
                               for mean, sigma in zip(pieces, pieces[len(out_g):])]
        for mean, sigma in zip(pieces, pieces[len(out_g):]):
            sigma.attrs.update(uncertainty.sigma_attrs(mean, "predicted"))
            uncertainty.link(mean.attrs, str(sigma.name))
        for arr in pieces:
            result[arr.name] = arr
    out_ds = xr.Dataset(result)
    for arr in list(result.values()):
        gm = cf.grid_mapping_name(arr)
        if gm and gm in ds.variables and gm not in out_ds.variables:
            out_ds[gm] = ds[gm]
    for coord in list(out_ds.coords.values()):  # cell bounds (time_bnds) go with their coordinate
        for name in cf.bounds_names(coord):
            if (name in ds.variables and name not in out_ds.variables
                    and all(out_ds.sizes.get(d, n) == n for d, n in ds[name].sizes.items())):
                out_ds[name] = ds[name]
    out_ds.attrs = cf.append_history(ds.attrs, f"predict model={model_label(model)} "
                                     f"({model_key(model)[:12]}) inputs={[g[0] for g in groups]}")
    return finish(out_ds, lazy, progress)


GEOLOCATION_NAMES = ("latitude", "longitude", "grid_latitude", "grid_longitude", "projection_x_coordinate",
                     "projection_y_coordinate")


# A tile may hold this many input values before its share of padding is checked: the largest
# default tiles (CUDA, several channels) stay below it.
TILE_VALUES_UNCHECKED = 2 ** 24
MAX_PADDING_FACTOR = 64  # a larger tile holds at most this many times the values of the data it covers


def _check_padding(x, plans, tile_pixels: int, spec) -> None:
    """An :class:`InputError` before anything is allocated when the model's halo and size multiple
    make each tile mostly padding and large: a card within its limits (halo and size multiple 4096)
    made a 64 x 64 field a 12,288-pixel-square tile, and predict asked for tens of GB (probe)."""
    values = tile_pixels * max(spec.in_channels, 1)
    covered = int(np.prod([min(p.stride, p.length) for p in plans])) * max(spec.in_channels, 1)
    if values > TILE_VALUES_UNCHECKED and values > MAX_PADDING_FACTOR * covered:
        side = " x ".join(str(p.tile_size) for p in plans)
        raise InputError(f"the model's halo ({spec.halo}) and size multiple ({spec.size_multiple}) make each tile of "
                         f"{x.name or 'the input'} {side} pixels, over {MAX_PADDING_FACTOR}x the data it covers: "
                         "check the model card's halo and size_multiple (or pass a smaller halo=), or give the model "
                         "larger inputs.")


def eligible_variables(ds, spec, dims, floats_only=False) -> list:
    """Data variables a one-channel model can run over: numbers with the spatial dims, not CF
    flag, grid-mapping, ancillary, cell-bounds or geolocation variables (those are metadata, never
    data to transform or fill)."""
    out = []
    # Ancillary variables (CF: quality flags, standard errors, an xdl fill's <var>_sigma) describe
    # another variable: they are not fields of their own.
    ancillary = {n for var in ds.data_vars.values() for n in str(var.attrs.get("ancillary_variables", "")).split()}
    # Geolocation kept as data variables (2-D lat/lon of a projected grid, read without
    # decode_coords): named by another's ``coordinates`` or by their standard_name.
    located = {n for var in ds.data_vars.values() for n in str(var.attrs.get("coordinates", "")).split()}
    # Cell bounds (CF ``bounds``, e.g. lon_bnds of a curvilinear grid) are coordinate metadata.
    bounds = {str(v.attrs["bounds"]) for v in [*ds.coords.values(), *ds.data_vars.values()] if "bounds" in v.attrs}
    for name, var in ds.data_vars.items():
        if name in ancillary or name in located or name in bounds or var.attrs.get("standard_name") in GEOLOCATION_NAMES:
            continue
        numeric = np.issubdtype(var.dtype, np.floating) or (
            not floats_only and np.issubdtype(var.dtype, np.integer) and var.ndim >= 2)
        if not numeric or var.ndim < 2:
            continue
        if cf.code_kind(var) is not None:
            continue
        try:
            spatial_dims_for(var, spec, dims)
        except InputError:
            continue
        out.append(name)
    return out


def _predict_dataarray(arr, model, spec, run, inputs, outputs, dims, channel_dim, progress):
    lazy = isinstance(arr.data, da.Array)
    name = arr.name if arr.name is not None else "output"
    if channel_dim is None and spec.in_channels > 1:
        candidates = [d for d in arr.dims if d in layout.CHANNEL_DIM_NAMES and arr.sizes[d] == spec.in_channels]
        if not candidates:
            raise InputError(f"the model takes {spec.in_channels} channels but DataArray {arr.name!r} "
                             f"{dict(arr.sizes)} has no channel dim of that size; pass channel_dim='...' "
                             "or use a Dataset with inputs=[...].")
        channel_dim = candidates[0]
    if channel_dim is not None:
        if channel_dim not in arr.dims:
            raise InputError(f"channel_dim={channel_dim!r} is not a dim of {arr.name!r} {arr.dims}.")
        if inputs is not None and channel_dim in arr.coords:
            arr = arr.sel({channel_dim: _names(inputs)})
        if arr.sizes[channel_dim] != spec.in_channels:
            raise InputError(f"{arr.name!r} has {arr.sizes[channel_dim]} channels along {channel_dim!r}; "
                             f"the model takes {spec.in_channels}.")
        order = list(range(arr.sizes[channel_dim]))
        if channel_dim in arr.coords:
            names = [str(v) for v in arr.coords[channel_dim].values]
            ordered = _inputs_in_card_order(spec, names, outputs, "the channel coordinate")
            if ordered != names:  # the card's channels in the card's order (as the Dataset path); distinct names
                order = [names.index(n) for n in ordered]
            names = ordered
        else:  # no labels: in the order given (a coordinate-less band dim crashed here; review)
            names = list(spec.inputs)
        arrays = [arr.isel({channel_dim: i}, drop=True) for i in order]
    else:
        names = [str(name)]
        arrays = [arr]
    spatial = spatial_dims_for(arrays[0], spec, dims)
    x = stack_channels([cf_masked(a) for a in arrays], spatial)
    scale = uncertainty.sigma_scale(model)  # sigmas come as more channels: "<name>_sigma"
    out_names = _names(outputs) if outputs is not None else list(spec.outputs)
    if not out_names:
        # With a sigma the model's channels are its means, then their sigmas (named below).
        means = uncertainty.mean_channels(spec.out_channels, scale, model_label(model))
        out_names = [str(name)] if means == 1 else [f"{name}_{i}" for i in range(means)]
    if scale is not None and 2 * len(out_names) == spec.out_channels:
        out_names += [uncertainty.sigma_name(n) for n in out_names]
    if len(out_names) != spec.out_channels:
        raise InputError(f"outputs={out_names} but the model returns {spec.out_channels} channel(s).")
    out = run_engine(x, model, spec, run, spatial, names if len(names) == spec.in_channels else [str(name)] * spec.in_channels,
                     out_names[:len(out_names) // 2] if scale is not None else out_names, sigma_scale=scale)
    pieces = _output_arrays(out, x, out_names, spec, arrays[0])
    if scale is not None:
        half = len(pieces) // 2
        pieces[half:] = [uncertainty.predicted_sigma(m, s, model_label(model)) for m, s in zip(pieces, pieces[half:])]
    if len(pieces) == 1:
        result = pieces[0]
        result.name = arr.name
    else:
        if "channel" in pieces[0].dims:  # a dim of the input's, not the model's channels
            raise InputError(f"{arr.name!r} {dict(arr.sizes)} has a dim 'channel' that is not the model's input "
                             f"channels (it takes {spec.in_channels}), and its {len(out_names)} output channels "
                             "would go along a new dim of that name: rename it (arr.rename(channel='band')), or "
                             "give a Dataset with inputs=[...].")
        result = xr.concat(pieces, dim=xr.DataArray(out_names, dims="channel", name="channel"))
        result.name = arr.name
        cf.carry_georeferencing(arrays[0], result)
    # Decoded values: valid_* in decoded units, no packing attributes (cf.output_attrs).
    # A model's own output keeps only where it lies (grid_mapping), as on the Dataset path: GRIB_name
    # '2 metre temperature' and the like labelled a network's output as the input (probe).
    kept = {k: v for k, v in cf.output_attrs(arr, result.dtype).items() if spec.fills_gaps or k in _PLACE_ATTRS}
    result.attrs = cf.append_history({**kept, **result.attrs},
                                     f"predict model={model_label(model)} ({model_key(model)[:12]})")
    return finish(projection.with_mapping_variable(result, arr), lazy, progress)
