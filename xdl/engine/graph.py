"""Dask glue: a lazy array ``(*batch, C, *spatial)`` in, the model's output ``(*batch, C_out, *spatial)`` out.

The input is padded once on the whole array (wrap or mirror, see :mod:`xdl.engine.tiling`), rechunked so
that chunk borders fall on the global tile grid, given ``halo`` of overlap with its neighbours
(``dask.array.overlap`` with no extra boundary, since the padding is already there), and every
block runs its tiles through the resident model. The model itself enters the graph once, as a
single key that every block depends on.
"""

from __future__ import annotations

import functools

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.delayed import delayed

from . import tiling
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
    ``nan_policy`` says (see :func:`xdl.predict.predict`)."""
    n_spatial = len(plans)
    first = x.ndim - n_spatial
    channel_axis = first - 1
    x = x.rechunk({channel_axis: -1})
    kwargs = dict(spec=spec, device=device, autocast=autocast, batch_size=batch_size,
                  n_lead=channel_axis, tiles=tiles, compiled=compiled, nan_policy=nan_policy, threads=threads)
    if spec.mode == "pointwise":
        out_chunks = x.chunks[:channel_axis] + ((spec.out_channels,),) + x.chunks[channel_axis + 1:]
        return _map_blocks(_pointwise_block, x, payload, out_chunks, **kwargs)
    padded, spatial_chunks = pad_and_align(x, plans, first)
    depth = {first + i: p.halo for i, p in enumerate(plans)}
    depth.update({a: 0 for a in range(first)})
    if any(depth.values()):
        padded = da.overlap.overlap(padded, depth=depth, boundary={a: "none" for a in depth})
    out_chunks = x.chunks[:channel_axis] + ((spec.out_channels,),) + tuple(spatial_chunks)
    return _map_blocks(_spatial_block, padded, payload, out_chunks, plans=plans, **kwargs)


def _map_blocks(func, x: da.Array, payload, out_chunks, **options) -> da.Array:
    """``func`` over the blocks of ``x`` with the run's options bound, named from the input's
    name, the model's key and the options: dask then neither walks nor tokenises the options
    (dataclasses, plans) for every graph it builds."""
    token = tokenize(x.name, payload.key, out_chunks, func.__name__, repr(sorted(options.items())))
    return da.map_blocks(functools.partial(func, **options), x, payload, chunks=out_chunks, dtype=np.float32,
                         meta=np.empty((0,) * x.ndim, np.float32), name=f"xdl{func.__name__}-{token}")


def _spatial_block(block, payload, *, plans, spec, device, autocast, batch_size, n_lead, tiles,
                   compiled, nan_policy="propagate", threads=None, block_info=None):
    out_shape = tuple(block_info[None]["chunk-shape"])
    lead = block.shape[:n_lead]
    data = block.reshape((-1,) + block.shape[n_lead:])  # (B, C, *padded)
    out_spatial = out_shape[n_lead + 1:]
    # One read pass proves the common complete block complete; only other blocks get a mask.
    valid = None if all_finite(data) else np.isfinite(data)
    if valid is None:
        inputs = data.astype(np.float32, copy=False)  # as it is: no copy, no zeroing pass
    else:
        inputs = np.where(valid, data.astype(np.float32, copy=False), np.float32(0))
    x_tiles, origins = tiling.cut_tiles(inputs, plans)  # a view when the block is one tile
    v_tiles = None if valid is None else tiling.cut_tiles(valid, plans)[0]  # bool: 1 byte a pixel
    needed = needed_tiles(v_tiles, len(x_tiles), plans, tiles, spec.target_channels)
    y_tiles = _run_tiles(payload, spec, x_tiles, v_tiles, needed, device=device, autocast=autocast,
                         batch_size=batch_size, compiled=compiled, nan_policy=nan_policy, threads=threads)
    out = tiling.assemble(y_tiles, origins, plans, data.shape[0], out_spatial)  # a view for one tile
    if valid is not None:
        out = _blank_unsupported(out, valid, plans, out_spatial, spec, nan_policy)
    return out.reshape(lead + out.shape[1:])


def all_finite(values: np.ndarray) -> bool:
    """Whether every value is finite, in one read pass and no mask: a finite sum proves it (NaN
    and inf propagate through sums); a sum that overflows falls back to the exact test.

    >>> all_finite(np.ones(5, "f4")), all_finite(np.array([1, np.inf], "f4")), all_finite(np.full(3, 3e38, "f4"))
    (True, False, True)
    """
    if values.size == 0:
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(values, axis=None)
    return bool(np.isfinite(total)) or bool(np.isfinite(values).all())


def needed_tiles(v_tiles, n_tiles: int, plans, tiles: str, target_channels: int | None = None) -> np.ndarray:
    """Which (sample, tile) pairs need the model: some valid input (any channel) and, for
    inpainting (``TILES_GAPS``), a gap in the core of the first ``target_channels`` channels (all
    channels when None: context channels that only inform the fill never call for one).
    ``v_tiles`` None: every input valid."""
    if v_tiles is None:
        return np.full(n_tiles, tiles != TILES_GAPS)
    needed = v_tiles.reshape(n_tiles, -1).any(axis=1)
    if tiles == TILES_GAPS:
        targets = v_tiles if target_channels is None else v_tiles[:, :target_channels]
        core = (slice(None),) + tuple(slice(p.halo, p.halo + p.stride) for p in plans)
        needed &= ~targets.all(axis=1)[core].reshape(n_tiles, -1).all(axis=1)
    return needed


def _run_tiles(payload, spec, x_tiles, v_tiles, needed, *, device, autocast, batch_size, compiled,
               nan_policy, threads) -> np.ndarray:
    """The model's output per tile ``(n_tiles, C_out, *tile)``; NaN for the tiles not needed and
    wherever the model gave NaN or inf (a model failure, kept visible for the caller)."""
    every = bool(needed.all())  # skip the fancy-index copies in the common case
    y_tiles = None
    if not every:
        y_tiles = np.full((len(x_tiles), spec.out_channels) + x_tiles.shape[2:], np.nan, np.float32)
    if not needed.any():
        return y_tiles
    resident = ResidentModel.get(payload, device, spec.takes_mask, compiled)
    # nan_policy="fill" hands a mask-less model a harmonic first guess in the gaps (only where
    # there are gaps: on a complete tile the fill is the identity).
    prefill = not spec.takes_mask and nan_policy == "fill" and v_tiles is not None
    mask_in = None
    if spec.takes_mask or prefill:
        if v_tiles is None:  # a complete block: the mask is all ones
            mask_in = np.ones(x_tiles.shape, np.float32)
        else:
            mask_in = (v_tiles if every else v_tiles[needed]).astype(np.float32)
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


def _pointwise_block(block, payload, *, spec, device, autocast, batch_size, n_lead, tiles, compiled,
                     nan_policy="propagate", threads=None, block_info=None):
    moved = np.moveaxis(block, n_lead, -1)  # (*lead, *spatial, C)
    points = moved.reshape(-1, moved.shape[-1])
    valid = np.isfinite(points).all(axis=1)
    result = np.full((points.shape[0], spec.out_channels), np.nan, np.float32)
    if valid.any():
        resident = ResidentModel.get(payload, device, spec.takes_mask, compiled)
        values = resident.run(points[valid].astype(np.float32), None, autocast, batch_size, spec.out_channels,
                              threads=threads)
        result[valid] = values  # NaN where the model gave NaN or inf (the runner sees to it)
    result = result.reshape(moved.shape[:-1] + (spec.out_channels,))
    return np.moveaxis(result, -1, n_lead)
