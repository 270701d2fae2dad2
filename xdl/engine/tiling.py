"""The global tile grid: pure numpy, no dask, no torch.

Along each tiled axis of length ``n`` the tiles are fixed on the whole array, not per chunk:
tile ``k`` owns the output core ``[k*stride, (k+1)*stride)`` and reads the input
``[k*stride - halo, (k+1)*stride + halo)``. Each output pixel comes from the one tile whose core
holds it, so a pixel's value is the same whatever the dask chunking (chunks are aligned to the
stride) and, when ``halo`` covers the model's receptive field, equal to a whole-array model call.
Cropping cores, rather than averaging overlapping tiles, is what keeps that equality exact.

Outside the array the input is padded: by wrapping for periodic axes (global longitude), by
mirror reflection elsewhere, so border tiles see plausible context instead of zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def round_down(value: int, multiple: int) -> int:
    return (int(value) // multiple) * multiple


@dataclass(frozen=True)
class AxisPlan:
    """How one axis is tiled.

    >>> p = AxisPlan.build(1000, halo=16, tile=256, size_multiple=16)
    >>> p.stride, p.n_tiles, p.tile_size
    (208, 5, 240)
    """

    length: int
    stride: int
    halo: int
    periodic: bool = False

    @classmethod
    def build(cls, length: int, *, halo: int, tile: int, size_multiple: int = 1,
              periodic: bool = False) -> "AxisPlan":
        """Choose the stride from the array length and the model only (never from chunks).

        ``tile`` is the tile side (core + 2 halo) wanted. An axis that fits in 1.25 x ``tile`` is
        computed as a single tile (one slightly larger tile beats several small ones that each
        pay the halo), with its core rounded up to the size multiple.
        """
        m = max(int(size_multiple), 1)
        halo = round_up(max(int(halo), 0), m)
        single = round_up(length, m)
        if single + 2 * halo <= max(int(1.25 * tile), 3 * halo + m):
            stride = single
        else:
            stride = max(round_down(tile - 2 * halo, m), m)
            # The overlap machinery needs every chunk (a multiple of the stride) to be >= halo.
            stride = max(stride, round_up(halo, m))
            # Balance: with the same number of tiles, a smaller stride wastes less padding.
            n_tiles = math.ceil(length / stride)
            stride = max(round_up(math.ceil(length / n_tiles), m), round_up(halo, m))
        return cls(length=int(length), stride=int(stride), halo=int(halo), periodic=bool(periodic))

    @property
    def n_tiles(self) -> int:
        return math.ceil(self.length / self.stride)

    @property
    def tile_size(self) -> int:
        return self.stride + 2 * self.halo

    @property
    def padded_length(self) -> int:
        """Length of the padded input: halo before, tiles' cores, halo after."""
        return self.n_tiles * self.stride + 2 * self.halo

    def padded_index(self) -> np.ndarray:
        """Source index for every position of the padded input (wrap or mirror outside)."""
        pos = np.arange(-self.halo, self.n_tiles * self.stride + self.halo)
        return wrap_or_reflect(pos, self.length, self.periodic)

    def aligned_chunks(self, chunks: tuple[int, ...]) -> tuple[int, ...]:
        """Output chunks: multiples of the stride close to the given chunks, covering ``length``."""
        target = max(round(np.median(chunks) / self.stride), 1) * self.stride if chunks else self.stride
        out, start = [], 0
        while start < self.length:
            size = min(target, self.length - start)
            out.append(size)
            start += size
        return tuple(out)

    def padded_chunks(self, out_chunks: tuple[int, ...]) -> tuple[int, ...]:
        """Chunks of the padded input matching ``out_chunks``: the halo and the rounding-up of
        the last tile ride on the first and last chunk, so that each chunk plus ``halo`` on
        each side is exactly the input its tiles read."""
        chunks = list(out_chunks)
        extra = self.n_tiles * self.stride - self.length
        chunks[0] += self.halo
        chunks[-1] += extra + self.halo
        return tuple(chunks)


def wrap_or_reflect(pos: np.ndarray, n: int, periodic: bool) -> np.ndarray:
    """Map positions outside ``[0, n)`` back inside: modulo for periodic axes, else mirror
    reflection about the edge samples (``-1 -> 1``), repeated for pads wider than the axis."""
    if periodic or n == 1:
        return np.mod(pos, n) if n > 1 else np.zeros_like(pos)
    period = 2 * (n - 1)
    r = np.mod(pos, period)
    return np.where(r < n, r, period - r)


def tile_starts(block_len: int, plan: AxisPlan) -> list[int]:
    """Offsets of the tiles inside a block of ``block_len`` padded samples (core + 2 halo)."""
    n = (block_len - 2 * plan.halo) // plan.stride
    return [k * plan.stride for k in range(n)]


def is_one_tile(spatial: tuple[int, ...], plans: list[AxisPlan]) -> bool:
    """Whether a padded block of this spatial shape is one tile, the whole block."""
    return all(length == p.tile_size and len(tile_starts(length, p)) == 1 for length, p in zip(spatial, plans))


def cut_tiles(block: np.ndarray, plans: list[AxisPlan]) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """Cut a padded block ``(B, C, *S)`` into tiles ``(B * n_tiles, C, *tile)``.

    Returns the tiles and, per tile, the start of its core in the block's output.
    """
    spatial = block.shape[2:]
    if is_one_tile(spatial, plans):
        return block, [(0,) * len(plans)]  # no copy
    starts_per_axis = [tile_starts(length, p) for length, p in zip(spatial, plans)]
    grids = np.meshgrid(*[np.arange(len(s)) for s in starts_per_axis], indexing="ij")
    combos = list(zip(*[g.ravel() for g in grids]))
    tiles, origins = [], []
    for combo in combos:
        starts = [starts_per_axis[a][i] for a, i in enumerate(combo)]
        index = tuple(slice(s, s + p.tile_size) for s, p in zip(starts, plans))
        tiles.append(block[(slice(None), slice(None)) + index])
        origins.append(tuple(starts))
    stacked = np.stack(tiles, axis=1)  # (B, T, C, *tile): batch entries of one tile stay adjacent
    stacked = stacked.reshape((-1,) + stacked.shape[2:])
    return stacked, origins


def assemble(outputs: np.ndarray, origins: list[tuple[int, ...]], plans: list[AxisPlan],
             batch: int, out_shape: tuple[int, ...]) -> np.ndarray:
    """Put tile outputs ``(B * n_tiles, C_out, *tile)`` back into a block ``(B, C_out, *out_shape)``,
    keeping each tile's core only and cropping at the array's end."""
    n_tiles = len(origins)
    if n_tiles == 1:  # the block is one tile: its core, cropped, is the result (a view, no copy)
        return outputs[(slice(None), slice(None)) + tuple(slice(p.halo, p.halo + n) for p, n in zip(plans, out_shape))]
    outputs = outputs.reshape((batch, n_tiles) + outputs.shape[1:])
    sizes = [max(o[a] for o in origins) + plans[a].stride for a in range(len(plans))]
    result = np.empty((batch, outputs.shape[2]) + tuple(sizes), dtype=outputs.dtype)
    for t, origin in enumerate(origins):
        core = tuple(slice(p.halo, p.halo + p.stride) for p in plans)
        dest = tuple(slice(o, o + p.stride) for o, p in zip(origin, plans))
        result[(slice(None), slice(None)) + dest] = outputs[(slice(None), t, slice(None)) + core]
    crop = tuple(slice(0, n) for n in out_shape)
    return result[(slice(None), slice(None)) + crop]


def within(mask: np.ndarray, radii, axes) -> np.ndarray:
    """True where some True pixel of ``mask`` lies within ``radii[i]`` pixels along ``axes[i]``,
    for every axis at once (a box, as a tile with that halo reads); beyond the edges counts as False.

    >>> within(np.array([0, 0, 1, 0, 0, 0], bool), [1], [0]).astype(int).tolist()
    [0, 1, 1, 1, 0, 0]
    """
    from scipy import ndimage  # a running maximum: one pass per axis, whatever the radius

    out = np.asarray(mask, dtype=np.uint8)
    for r, axis in zip(radii, axes):
        if r > 0:
            out = ndimage.maximum_filter1d(out, 2 * int(r) + 1, axis=axis, mode="constant", cval=0)
    return out.astype(bool)

