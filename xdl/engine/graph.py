"""Dask glue: a lazy array ``(*batch, C, *spatial)`` in, the model's output ``(*batch, C_out, *spatial)`` out.

Output chunks fall on the global tile grid (multiples of the stride close to the user's chunks);
each block's input, its output chunk plus ``halo`` both sides (wrap or mirror outside the array,
see :mod:`xdl.engine.tiling`), is gathered in one task straight from the source blocks it touches
(:func:`gather_padded`; the same values as padding, rechunking and ``dask.array.overlap``, which
:func:`pad_and_align` still does, in a dozen tasks a block), and every block runs its tiles through
the resident model. A block that is already what its tiles read (no halo, aligned) is used as it
is. The model itself enters the graph once, as a single key that every block depends on.
"""

from __future__ import annotations

import functools
import itertools
import warnings

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import delayed
from dask.highlevelgraph import HighLevelGraph

from ..errors import XdlWarning
from . import tiling
from .checks import all_finite
from .runner import ModelPayload, ResidentModel
from .spec import EngineSpec

TILES_ALL = "all"      # run every tile that has some valid input
TILES_GAPS = "gaps"    # run only tiles whose core holds a gap (inpainting: the rest is kept as is)


def payload_for(module, key: str, label: str | None = None):
    """The model as one graph key (shipped once per worker)."""
    return delayed(ModelPayload(module, key, label), pure=True, name=f"xdl-model-{key[:16]}")


def pad_and_align(x: da.Array, plans: list[tiling.AxisPlan], first_axis: int) -> tuple[da.Array, list[tuple]]:
    """Pad the spatial axes (starting at ``first_axis``) for the tile grid and chunk them so that
    each chunk plus ``halo`` both sides is exactly what its tiles read. Returns the padded array
    and the output chunks along each spatial axis."""
    out_chunks = []
    for i, plan in enumerate(plans):
        axis = first_axis + i
        user_chunks = _core_chunks(x.chunks[axis], plan)  # before the pads join the first and last chunk
        index = plan.padded_index()
        left, right = index[:plan.halo], index[plan.halo + plan.length:]
        parts = []
        if left.size:
            parts.append(da.take(x, left, axis=axis))
        parts.append(x)
        if right.size:
            parts.append(da.take(x, right, axis=axis))
        x = da.concatenate(parts, axis=axis) if len(parts) > 1 else x
        chunks = plan.aligned_chunks(user_chunks)
        out_chunks.append(chunks)
        x = x.rechunk({axis: plan.padded_chunks(chunks)})
    return x, out_chunks


def gather_padded(x: da.Array, plans: list[tiling.AxisPlan], first_axis: int) -> tuple[da.Array, list[tuple]]:
    """What :func:`pad_and_align` plus ``halo`` of overlap give, in one graph layer: block ``k``
    along a spatial axis is exactly the padded input its tiles read (output chunk ``k`` of the
    stride-aligned chunks, plus ``halo`` both sides, plus the last tile's rounding at the end),
    gathered straight from the source blocks it touches (mirror or wrap outside the array).
    Same values as padding, rechunking and overlapping; one task a block instead of a dozen.
    Returns the gathered array and the output chunks along each spatial axis."""
    out_chunks, axes = [], []
    for i, plan in enumerate(plans):
        chunks = plan.aligned_chunks(_core_chunks(x.chunks[first_axis + i], plan))
        out_chunks.append(chunks)
        axes.append(_axis_sources(x.chunks[first_axis + i], plan, chunks))
    if all(p.halo == 0 and p.n_tiles * p.stride == p.length and c == x.chunks[first_axis + i]
           for i, (p, c) in enumerate(zip(plans, out_chunks))):
        return x, out_chunks  # the source blocks are what the tiles read: no layer at all
    lead_blocks = [range(len(c)) for c in x.chunks[:first_axis]]
    name = f"xdl-gather-{tokenize(x.name, plans, first_axis)}"
    dsk = {}
    for lead in itertools.product(*lead_blocks):
        for spatial in itertools.product(*[range(len(c)) for c in out_chunks]):
            pieces = [axes[a][k] for a, k in enumerate(spatial)]
            sources = _nested_keys(x.name, lead, [p[0] for p in pieces])
            dsk[(name,) + lead + spatial] = (_gather, sources, [p[1] for p in pieces])
    chunks = tuple(x.chunks[:first_axis]) + tuple(
        tuple(c + 2 * p.halo + (p.n_tiles * p.stride - p.length if k == len(cs) - 1 else 0) for k, c in enumerate(cs))
        for p, cs in zip(plans, out_chunks))
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[x])
    return da.Array(graph, name, chunks, meta=x._meta), out_chunks


def _axis_sources(source_chunks, plan: tiling.AxisPlan, out_chunks) -> list[tuple[list[int], list[tuple]]]:
    """Per output chunk along one axis: the source chunks its padded range touches (in order) and
    the runs that make it up, ``(i, slice)``: a slice (step 1, or -1 where mirrored) of the
    ``i``-th touched chunk, in order."""
    bounds = np.cumsum((0,) + tuple(source_chunks))
    index = plan.padded_index()
    found, start = [], 0
    for k, size in enumerate(out_chunks):
        stop = start + size + 2 * plan.halo + (plan.n_tiles * plan.stride - plan.length if k == len(out_chunks) - 1 else 0)
        wanted = index[start:stop]
        chunk_of = np.searchsorted(bounds, wanted, side="right") - 1
        touched = sorted(set(chunk_of.tolist()))
        local, chunk_of = (wanted - bounds[chunk_of]).tolist(), chunk_of.tolist()
        runs, i = [], 0
        while i < len(local):  # a run: one source chunk, steps of +1 (or -1 where mirrored)
            j, step = i + 1, None
            while j < len(local) and chunk_of[j] == chunk_of[i]:
                d = local[j] - local[j - 1]
                if d not in (1, -1) or step not in (None, d):
                    break
                step, j = d, j + 1
            runs.append((touched.index(chunk_of[i]), _run_slice(local[i], local[j - 1])))
            i = j
        found.append((touched, runs))
        start += size
    return found


def _run_slice(first: int, last: int) -> slice:
    """The slice from ``first`` to ``last`` inclusive, backwards where ``last < first``."""
    if last >= first:
        return slice(first, last + 1)
    return slice(first, last - 1 if last > 0 else None, -1)


def _nested_keys(name, lead, touched_per_axis):
    """The source block keys as nested lists, one level per spatial axis (dask fills them in)."""
    if not touched_per_axis:
        return (name,) + tuple(lead)
    return [_nested_keys(name, tuple(lead) + (j,), touched_per_axis[1:]) if len(touched_per_axis) > 1
            else (name,) + tuple(lead) + (j,) for j in touched_per_axis[0]]


def _gather(sources, runs) -> np.ndarray:
    """The padded block from nested source blocks (one level per trailing spatial axis) and each
    axis's runs (:func:`_axis_sources`): one copy of each run straight into the block, no
    concatenation first and no fancy indexing (3-4x less time on a 3-channel GOES tile); a view
    where one run of one source is the whole block."""
    n = len(runs)
    if all(len(r) == 1 for r in runs):
        block = sources
        for (i, _) in (r[0] for r in runs):
            block = block[i]
        return block[(Ellipsis,) + tuple(r[0][1] for r in runs)]
    first = sources
    for _ in range(n):
        first = first[0]
    offsets = [np.cumsum([0] + [_run_length(s) for _, s in r]).tolist() for r in runs]
    out = np.empty(first.shape[:first.ndim - n] + tuple(o[-1] for o in offsets), dtype=first.dtype)
    for combo in itertools.product(*[range(len(r)) for r in runs]):
        block = sources
        for axis, j in enumerate(combo):
            block = block[runs[axis][j][0]]
        where = tuple(slice(offsets[a][j], offsets[a][j + 1]) for a, j in enumerate(combo))
        out[(Ellipsis,) + where] = block[(Ellipsis,) + tuple(runs[a][j][1] for a, j in enumerate(combo))]
    return out


def _run_length(s: slice) -> int:
    if s.step == -1:
        return s.start - (-1 if s.stop is None else s.stop)
    return s.stop - s.start


# An insert_axis array remembers the array it was made from (attribute on the dask array). Every
# layer a block passes through costs dask a task or, fused, a sub-graph it orders again in every
# task: around a near-free model, the channel axis put in before it and taken out after it cost a
# third of the run (16 blocks of 4 MB: 38 ms, 28 with both in the model's own task). So
# apply_model reads an insert_axis input's source and inserts the axis in its task, a one-channel
# model's layer drops the axis itself and is handed on through insert_axis, and take_index of
# that gives the model's own layer back.
INSERTED_INTO = "_xdl_inserted_into"


def insert_axis(x: da.Array, axis: int) -> da.Array:
    """``x`` with a new axis of length 1 at ``axis``: one blockwise layer of views (``expand_dims``
    and ``transpose`` make two more tasks a block), which :func:`apply_model` and
    :func:`take_index` see through."""
    index = tuple(range(x.ndim))
    out_index = index[:axis] + (x.ndim,) + index[axis:]
    out = da.blockwise(np.expand_dims, out_index, x, index, new_axes={x.ndim: 1}, axis=axis,
                       name=f"xdl-channels-{tokenize(x.name, axis)}", dtype=x.dtype, align_arrays=False,
                       meta=np.empty((0,) * (x.ndim + 1), x.dtype))
    setattr(out, INSERTED_INTO, (x, axis))
    return out


def _inserted_from(x: da.Array, axis: int) -> da.Array | None:
    """The array ``x`` was made from by :func:`insert_axis` at ``axis``, if it was."""
    made = getattr(x, INSERTED_INTO, None)
    return made[0] if made is not None and made[1] == axis else None


def take_index(x: da.Array, index: int, axis: int) -> da.Array:
    """``x[..., index, ...]`` along ``axis``: the array an :func:`insert_axis` was made from; where
    ``axis`` is one chunk, one blockwise layer of views; else dask's indexing."""
    source = _inserted_from(x, axis)
    if source is not None and index == 0:
        return source
    if x.numblocks[axis] > 1:  # e.g. outputs joined from per-channel pieces
        return x[(slice(None),) * axis + (index,)]
    x_index = tuple(range(x.ndim))
    return da.blockwise(_take_index, x_index[:axis] + x_index[axis + 1:], x, x_index, index=index, axis=axis,
                        name=f"xdl-channel-{tokenize(x.name, index, axis)}", dtype=x.dtype, align_arrays=False,
                        meta=np.empty((0,) * (x.ndim - 1), x.dtype))


def _take_index(blocks, index: int, axis: int) -> np.ndarray:
    block = blocks[0]  # the one chunk along ``axis`` (dask hands contracted axes over as a list)
    return block[(slice(None),) * axis + (index,)]


def _core_chunks(chunks: tuple[int, ...], plan: tiling.AxisPlan) -> tuple[int, ...]:
    """The user's chunk sizes along an axis (empty chunks dropped), which the engine's chunks
    stay close to; read before padding, as the pads would drag the median down."""
    inner = [c for c in chunks if c > 0]
    return tuple(inner) if inner else (plan.length,)


def apply_model(x: da.Array, payload, spec: EngineSpec, plans: list[tiling.AxisPlan], *,
                device, autocast, batch_size: int, tiles: str = TILES_ALL, compiled: bool = False,
                nan_policy: str = "propagate", threads: int | None = None) -> da.Array:
    """Run the model over ``x`` (``(*batch, C, *spatial)``, float, NaN = invalid) lazily.

    The output is NaN where the model gave NaN or inf (a model failure, kept visible for the
    caller), where no tile input was valid and, for a model that takes no mask, as
    ``nan_policy`` says (see :func:`xdl.predict.predict`). One layer of tasks: an
    :func:`insert_axis` input is read from its source, and a one-channel output is the model's
    layer without the channel axis through :func:`insert_axis` (see :data:`INSERTED_INTO`)."""
    channel_axis = x.ndim - len(plans) - 1
    source = _inserted_from(x, channel_axis)
    expand = source is not None
    if not expand:
        source = x.rechunk({channel_axis: -1})
    drop = spec.out_channels == 1
    options = dict(spec=spec, device=device, autocast=autocast, batch_size=batch_size, n_lead=channel_axis,
                   tiles=tiles, compiled=compiled, nan_policy=nan_policy, threads=threads)
    out = _model_layer(source, payload, plans, channel_axis, expand, drop, options)
    return insert_axis(out, channel_axis) if drop else out


def _model_layer(source, payload, plans, channel_axis, expand: bool, drop: bool, options: dict) -> da.Array:
    """The model's one layer over ``source``: ``(*batch, C, *spatial)``, or without the channel
    axis where ``expand``; the output without it where ``drop``. ``options``: the block kernel's."""
    spec = options["spec"]
    first = channel_axis + (0 if expand else 1)  # the first spatial axis of the source
    if spec.mode == "pointwise":
        kernel, blocks, spatial_chunks = _pointwise_block, source, source.chunks[first:]
    else:
        kernel, options = _spatial_block, dict(options, plans=plans)
        blocks, spatial_chunks = gather_padded(source, plans, first)
    out_chunks = (source.chunks[:channel_axis] + (() if drop else ((spec.out_channels,),))
                  + tuple(spatial_chunks))
    return _map_blocks(kernel, blocks, payload, out_chunks, channel_axis if expand else None,
                       channel_axis if drop else None, **options)


def _map_blocks(kernel, x: da.Array, payload, out_chunks, expand_at, drop_at, **options) -> da.Array:
    """``kernel`` over the blocks of ``x`` with the run's options bound (in :func:`_model_task`),
    named from the input's name, the model's key and the options: dask then neither walks nor
    tokenises the options (dataclasses, plans) for every graph it builds."""
    token = tokenize(x.name, payload.key, out_chunks, kernel.__name__, expand_at, drop_at,
                     repr(sorted(options.items())))
    axes = {}
    if expand_at is not None and drop_at is None:
        axes["new_axis"] = [expand_at]
    elif drop_at is not None and expand_at is None:
        axes["drop_axis"] = [drop_at]
    task = functools.partial(_model_task, kernel=kernel, expand_at=expand_at, drop_at=drop_at, **options)
    return da.map_blocks(task, x, payload, chunks=out_chunks, dtype=np.float32, **axes,
                         meta=np.empty((0,) * len(out_chunks), np.float32), name=f"xdl{kernel.__name__}-{token}")


def _model_task(block, payload, *, kernel, expand_at, drop_at, block_info=None, **options) -> np.ndarray:
    """One block through ``kernel``, with the channel axis inserted before (``expand_at``) and
    taken out after (``drop_at``) as views in the same task."""
    if expand_at is not None:
        block = np.expand_dims(block, expand_at)
    out_shape = list(block_info[None]["chunk-shape"])
    if drop_at is not None:
        out_shape.insert(drop_at, 1)
    out = kernel(block, payload, out_shape=tuple(out_shape), **options)
    if options.get("tiles") == TILES_ALL and not all_finite(out) and all_finite(block):
        # predict: NaN out of a finite block is the model's failure, never the input's. Weights of
        # 3e38 overflowed to an all-NaN output without a word (fuzzing); inpaint flags it (4).
        warnings.warn(f"model {getattr(payload, 'label', None) or 'model'!r} returned NaN or inf for a block whose "
                      "input is all finite; those outputs are NaN. An overflow (its weights, the card's "
                      "normalization) or a bug in its forward.", XdlWarning, stacklevel=1)  # in a dask task
    return out if drop_at is None else out[(slice(None),) * drop_at + (0,)]


def _spatial_block(block, payload, *, out_shape, plans, spec, device, autocast, batch_size, n_lead, tiles,
                   compiled, nan_policy="propagate", threads=None):
    lead = block.shape[:n_lead]
    data = block.reshape((-1,) + block.shape[n_lead:])  # (B, C, *padded)
    out_spatial = out_shape[n_lead + 1:]
    known_gaps = False
    if (tiles == TILES_ALL and not spec.takes_mask and data.dtype == np.float32
            and tiling.is_one_tile(data.shape[2:], plans)):
        # A complete block as it is, checked with the output (None: it has gaps, masked below).
        resident = ResidentModel.get(payload, device, spec.takes_mask, compiled, spec.single_threaded)
        out = resident.run_complete(data, autocast, batch_size, spec.out_channels, threads)
        if out is not None:
            out = tiling.assemble(out, [(0,) * len(plans)], plans, data.shape[0], out_spatial)  # a view
            return out.reshape(lead + out.shape[1:])
        known_gaps = True
    # One read pass proves the common complete block complete; only other blocks get a mask.
    valid = None if not known_gaps and all_finite(data) else np.isfinite(data)
    if valid is None:
        inputs = data.astype(np.float32, copy=False)  # as it is: no copy, no zeroing pass
    else:
        inputs = np.where(valid, data.astype(np.float32, copy=False), np.float32(0))
    x_tiles, origins = tiling.cut_tiles(inputs, plans)  # a view when the block is one tile
    v_tiles = None if valid is None else tiling.cut_tiles(valid, plans)[0]  # bool: 1 byte a pixel
    # Gaps outside the domain (marked +inf by the caller) for a model that takes them.
    outside = None
    if spec.takes_domain and valid is not None:
        marked = data == np.inf  # one pass (np.isposinf takes four times as long)
        outside = tiling.cut_tiles(marked, plans)[0] if marked.any() else None
    needed = needed_tiles(v_tiles, len(x_tiles), plans, tiles, spec.target_channels, outside)
    y_tiles = _run_tiles(payload, spec, x_tiles, v_tiles, needed, device=device, autocast=autocast,
                         batch_size=batch_size, compiled=compiled, nan_policy=nan_policy, threads=threads,
                         outside=outside)
    out = tiling.assemble(y_tiles, origins, plans, data.shape[0], out_spatial)  # a view for one tile
    if valid is not None:
        out = _blank_unsupported(out, valid, plans, out_spatial, spec, nan_policy)
    return out.reshape(lead + out.shape[1:])


def needed_tiles(v_tiles, n_tiles: int, plans, tiles: str, target_channels: int | None = None,
                 outside=None) -> np.ndarray:
    """Which (sample, tile) pairs need the model: some valid input (any channel) and, for
    inpainting (``TILES_GAPS``), a gap in the core of the first ``target_channels`` channels (all
    channels when None: context channels that only inform the fill never call for one) that is
    not ``outside`` the domain. ``v_tiles`` None: every input valid."""
    if v_tiles is None:
        return np.full(n_tiles, tiles != TILES_GAPS)
    needed = v_tiles.reshape(n_tiles, -1).any(axis=1)
    if tiles == TILES_GAPS:
        settled = v_tiles if outside is None else v_tiles | outside  # valid, or a gap nobody reads
        targets = settled if target_channels is None else settled[:, :target_channels]
        core = (slice(None),) + tuple(slice(p.halo, p.halo + p.stride) for p in plans)
        needed &= ~targets.all(axis=1)[core].reshape(n_tiles, -1).all(axis=1)
    return needed


def _run_tiles(payload, spec, x_tiles, v_tiles, needed, *, device, autocast, batch_size, compiled,
               nan_policy, threads, outside=None) -> np.ndarray:
    """The model's output per tile ``(n_tiles, C_out, *tile)``; NaN for the tiles not needed and
    wherever the model gave NaN or inf (a model failure, kept visible for the caller). ``outside``
    (bool like ``v_tiles``, or None): gaps outside the domain, -1 in the mask."""
    every = bool(needed.all())  # skip the fancy-index copies in the common case
    y_tiles = None
    if not every:
        y_tiles = np.full((len(x_tiles), spec.out_channels) + x_tiles.shape[2:], np.nan, np.float32)
    if not needed.any():
        return y_tiles
    resident = ResidentModel.get(payload, device, spec.takes_mask, compiled, spec.single_threaded)
    # nan_policy="fill" hands a mask-less model a harmonic first guess in the gaps (only where
    # there are gaps: on a complete tile the fill is the identity).
    prefill = not spec.takes_mask and nan_policy == "fill" and v_tiles is not None
    mask_in = None
    if spec.takes_mask or prefill:
        if v_tiles is None:  # a complete block: the mask is all ones
            mask_in = np.ones(x_tiles.shape, np.float32)
        else:
            mask_in = (v_tiles if every else v_tiles[needed]).astype(np.float32)
            if outside is not None:
                mask_in -= outside if every else outside[needed]
    # NaN wherever the model gave NaN or inf (the runner sees to it, while the output is in cache).
    result = resident.run(x_tiles if every else x_tiles[needed], mask_in, autocast, batch_size,
                          spec.out_channels, prefill, threads)
    if every:
        return result  # already (n_tiles, C_out, *tile), checked by the runner
    y_tiles[needed] = result
    return y_tiles


def _blank_unsupported(out, valid, plans, out_spatial, spec, nan_policy) -> np.ndarray:
    """NaN where the output rests on missing input: for a model that takes no mask under
    ``nan_policy="propagate"``, within the halo (the model's receptive field) of a missing input
    (it saw zeros there, in normalised units); for a model that does not fill gaps, at the
    missing pixels themselves."""
    if not spec.takes_mask and nan_policy == "propagate":
        touched = _within_halo(~valid.all(axis=1), plans, out_spatial)
        return np.where(touched[:, None], np.float32(np.nan), out)
    if not spec.fills_gaps:
        crop = tuple(slice(p.halo, p.halo + n) for p, n in zip(plans, out_spatial))
        pixel_valid = valid.all(axis=1)[(slice(None),) + crop]
        return np.where(pixel_valid[:, None], out, np.float32(np.nan))
    return out


def _within_halo(missing: np.ndarray, plans, out_spatial) -> np.ndarray:
    """For a padded block's ``missing`` pixels ``(B, *padded)``: per output pixel ``(B, *out_spatial)``,
    whether a missing pixel lies within ``halo`` of it along every axis (a box, as tiles read)."""
    axes = range(1, 1 + len(plans))
    hit = tiling.within(missing, [p.halo for p in plans], axes)
    return hit[(slice(None),) + tuple(slice(p.halo, p.halo + n) for p, n in zip(plans, out_spatial))]


# A pointwise model's calls: a block's valid points go in calls of at most ``batch_size``, each
# with the last point repeated PAD_POINTS times after its own and at least MIN_POINTS_PER_CALL rows
# in all. A matrix product rounds the rows of its last, partial block of rows (and every row of a
# call of a few rows) otherwise than the rest, and which points fall there followed the chunking:
# results 1.5e-8 apart (probes). With the padding every real point lies in a full block.
MIN_POINTS_PER_CALL = 256
PAD_POINTS = 64


def _padded_calls(points: np.ndarray, batch_size: int):
    """``(call, n)`` for each call over ``points``: the rows to run and how many of them are real."""
    per_call = max(batch_size - PAD_POINTS, 1)
    for start in range(0, len(points), per_call):
        part = points[start:start + per_call]
        extra = max(PAD_POINTS, MIN_POINTS_PER_CALL - len(part))
        yield np.concatenate([part, np.repeat(part[-1:], extra, axis=0)]), len(part)


def _pointwise_block(block, payload, *, out_shape, spec, device, autocast, batch_size, n_lead, tiles, compiled,
                     nan_policy="propagate", threads=None):
    moved = np.moveaxis(block, n_lead, -1)  # (*lead, *spatial, C)
    points = moved.reshape(-1, moved.shape[-1])
    valid = np.isfinite(points).all(axis=1)
    result = np.full((points.shape[0], spec.out_channels), np.nan, np.float32)
    if valid.any():
        resident = ResidentModel.get(payload, device, spec.takes_mask, compiled, spec.single_threaded)
        values = [resident.run(call, None, autocast, len(call), spec.out_channels, threads=threads)[:n]
                  for call, n in _padded_calls(points[valid].astype(np.float32), batch_size)]
        result[valid] = np.concatenate(values)  # NaN where the model gave NaN or inf (the runner sees to it)
    result = result.reshape(moved.shape[:-1] + (spec.out_channels,))
    return np.moveaxis(result, -1, n_lead)
