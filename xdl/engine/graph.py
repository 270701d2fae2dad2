"""Dask glue: a lazy array ``(*batch, C, *spatial)`` in, the model's output ``(*batch, C_out, *spatial)`` out.

The input is padded once on the whole array (wrap or mirror, see :mod:`xdl.engine.tiling`), rechunked so
that chunk borders fall on the global tile grid, given ``halo`` of overlap with its neighbours
(``dask.array.overlap`` with no extra boundary, since the padding is already there), and every
block runs its tiles through the resident model. The model itself enters the graph once, as a
single key that every block depends on.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
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
        return da.map_blocks(_pointwise_block, x, payload, chunks=out_chunks, dtype=np.float32,
                             meta=np.empty((0,) * x.ndim, np.float32), **kwargs)
    padded, spatial_chunks = pad_and_align(x, plans, first)
    depth = {first + i: p.halo for i, p in enumerate(plans)}
    depth.update({a: 0 for a in range(first)})
    if any(depth.values()):
        padded = da.overlap.overlap(padded, depth=depth, boundary={a: "none" for a in depth})
    out_chunks = x.chunks[:channel_axis] + ((spec.out_channels,),) + tuple(spatial_chunks)
    return da.map_blocks(_spatial_block, padded, payload, chunks=out_chunks, dtype=np.float32,
                         meta=np.empty((0,) * x.ndim, np.float32), plans=plans, **kwargs)


def _spatial_block(block, payload, *, plans, spec, device, autocast, batch_size, n_lead, tiles,
                   compiled, nan_policy="propagate", threads=None, block_info=None):
    out_shape = tuple(block_info[None]["chunk-shape"])
    lead = block.shape[:n_lead]
    data = block.reshape((-1,) + block.shape[n_lead:])  # (B, C, *padded)
    valid = np.isfinite(data)
    all_valid = bool(valid.all())
    # A complete block needs no zeroing pass (np.where would copy the same values).
    data = data.astype(np.float32, copy=False) if all_valid else np.where(valid, data, np.float32(0)).astype(np.float32, copy=False)
    batch = data.shape[0]
    out_spatial = out_shape[n_lead + 1:]
    x_tiles, origins = tiling.cut_tiles(data, plans)
    v_tiles, _ = tiling.cut_tiles(valid, plans)  # bool: 1 byte a pixel until the model needs floats
    # Which (sample, tile) pairs need the model: some valid input, and (for inpainting) a gap in the core.
    n_tiles = len(v_tiles)
    if all_valid:
        needed = np.full(n_tiles, tiles != TILES_GAPS)
    else:
        needed = v_tiles.reshape(n_tiles, -1).any(axis=1)
        if tiles == TILES_GAPS:
            core = (slice(None),) + tuple(slice(p.halo, p.halo + p.stride) for p in plans)
            needed &= ~v_tiles.all(axis=1)[core].reshape(n_tiles, -1).all(axis=1)
    every = bool(needed.all())  # skip the fancy-index copies in the common case
    y_tiles = None
    if not every:
        y_tiles = np.full((n_tiles, spec.out_channels) + x_tiles.shape[2:], np.nan, np.float32)
    if needed.any():
        resident = ResidentModel.get(payload, device, spec.takes_mask, compiled)
        # nan_policy="fill" hands a mask-less model a harmonic first guess in the gaps (only
        # where there are gaps: on a complete tile the fill is the identity).
        prefill = not spec.takes_mask and nan_policy == "fill" and not all_valid
        mask_in = None
        if spec.takes_mask or prefill:
            mask_in = (v_tiles if every else v_tiles[needed]).astype(np.float32)
        result = resident.run(x_tiles if every else x_tiles[needed], mask_in, autocast, batch_size,
                              spec.out_channels, prefill, threads)
        if not np.isfinite(result).all():  # inf is no value either: the caller sees NaN = model failed
            result = np.where(np.isfinite(result), result, np.float32(np.nan))
        if every:
            y_tiles = result  # already (n_tiles, C_out, *tile), checked by the runner
        else:
            y_tiles[needed] = result
    out = tiling.assemble(y_tiles, origins, plans, batch, out_spatial)
    if not spec.takes_mask and nan_policy == "propagate":
        # The model saw zeros (normalised units) for missing inputs: no output where any of them
        # lies within the halo (the model's receptive field) of the output pixel.
        if not all_valid:
            touched = _within_halo(~valid.all(axis=1), plans, out_spatial)
            out = np.where(touched[:, None], np.float32(np.nan), out)
    elif not spec.fills_gaps:  # no output where the input was not all valid
        crop = tuple(slice(p.halo, p.halo + n) for p, n in zip(plans, out_spatial))
        pixel_valid = valid.all(axis=1)[(slice(None),) + crop]
        out = np.where(pixel_valid[:, None], out, np.float32(np.nan))
    return out.reshape(lead + out.shape[1:])


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
        result[valid] = np.where(np.isfinite(values), values, np.float32(np.nan))
    result = result.reshape(moved.shape[:-1] + (spec.out_channels,))
    return np.moveaxis(result, -1, n_lead)
