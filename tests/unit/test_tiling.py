"""xdl.engine.tiling: the global tile grid (numpy only)."""

import numpy as np
import pytest

from xdl.engine.tiling import AxisPlan, assemble, cut_tiles, round_down, round_up, tile_starts, wrap_or_reflect


def test_round_up_and_down():
    assert (round_up(17, 16), round_up(16, 16), round_up(0, 8)) == (32, 16, 0)
    assert (round_down(17, 16), round_down(15, 16)) == (16, 0)


def test_plan_balances_tiles_and_pads_to_the_size_multiple():
    p = AxisPlan.build(1000, halo=16, tile=256, size_multiple=16)
    # 224 (= 256 - 2*16) would need 5 tiles; 5 tiles of 208 (ceil(1000/5)=200 rounded up to 16) waste less
    assert (p.stride, p.n_tiles, p.tile_size, p.padded_length) == (208, 5, 240, 1072)
    assert p.n_tiles * p.stride >= p.length > (p.n_tiles - 1) * p.stride
    assert p.tile_size % 16 == 0 and p.stride % 16 == 0


def test_halo_is_rounded_up_to_the_size_multiple():
    p = AxisPlan.build(100, halo=5, tile=64, size_multiple=8)
    assert (p.halo, p.stride, p.n_tiles, p.tile_size) == (8, 40, 3, 56)


def test_short_axis_is_one_tile_with_core_rounded_up():
    p = AxisPlan.build(50, halo=4, tile=64, size_multiple=8)
    assert (p.stride, p.n_tiles, p.tile_size, p.padded_length) == (56, 1, 72, 72)
    assert AxisPlan.build(50, halo=0, tile=64).stride == 50  # no multiple: the axis itself


def test_stride_never_smaller_than_halo():
    # a tile barely wider than two halos: the stride stays >= halo (overlap needs chunks >= halo)
    p = AxisPlan.build(500, halo=40, tile=90, size_multiple=1)
    assert p.stride >= p.halo == 40


def test_padded_index_mirrors_or_wraps():
    mirror = AxisPlan(length=5, stride=5, halo=2)
    assert mirror.padded_index().tolist() == [2, 1, 0, 1, 2, 3, 4, 3, 2]
    wrap = AxisPlan(length=5, stride=5, halo=2, periodic=True)
    assert wrap.padded_index().tolist() == [3, 4, 0, 1, 2, 3, 4, 0, 1]
    # the last tile is rounded up: the pad after the data covers halo + the rounding (3 + 2 here)
    longer = AxisPlan(length=5, stride=4, halo=2)
    assert longer.padded_length == 12 and longer.padded_index().tolist() == [2, 1, 0, 1, 2, 3, 4, 3, 2, 1, 0, 1]


def test_wrap_or_reflect_for_pads_wider_than_the_axis():
    assert wrap_or_reflect(np.arange(-5, 8), 3, False).tolist() == [1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1]
    assert wrap_or_reflect(np.arange(-4, 5), 3, True).tolist() == [2, 0, 1, 2, 0, 1, 2, 0, 1]
    assert wrap_or_reflect(np.arange(-2, 3), 1, False).tolist() == [0, 0, 0, 0, 0]


def test_aligned_chunks_are_stride_multiples_near_the_users():
    p = AxisPlan(length=1000, stride=208, halo=16)
    assert p.aligned_chunks((300, 300, 400)) == (208, 208, 208, 208, 168)  # median 300 -> 1 stride
    assert p.aligned_chunks((500, 500)) == (416, 416, 168)                # 500 -> 2 strides
    assert p.aligned_chunks((1000,)) == (1000,)                            # one chunk: the whole axis
    assert p.aligned_chunks(()) == (208, 208, 208, 208, 168)
    for chunks in [(1,), (77, 923), (999, 1)]:
        out = p.aligned_chunks(chunks)
        assert sum(out) == 1000 and all(c % 208 == 0 for c in out[:-1])


def test_padded_chunks_carry_the_halo_and_the_rounding():
    p = AxisPlan(length=1000, stride=208, halo=16)
    out = (416, 416, 168)
    # 5 tiles cover 1040: the 40 extra and the halo ride on the last chunk, the halo on the first
    assert p.padded_chunks(out) == (432, 416, 224)
    assert sum(p.padded_chunks(out)) == p.padded_length


def _padded(values, plans):
    return values[(slice(None), slice(None)) + np.ix_(*[p.padded_index() for p in plans])]


def test_cut_tiles_and_assemble_give_back_the_array():
    plans = [AxisPlan(length=10, stride=4, halo=2), AxisPlan(length=9, stride=3, halo=1, periodic=True)]
    data = np.random.default_rng(1).normal(size=(2, 1, 10, 9)).astype("f4")
    block = _padded(data, plans)
    assert block.shape == (2, 1, 16, 11)
    assert tile_starts(16, plans[0]) == [0, 4, 8] and tile_starts(11, plans[1]) == [0, 3, 6]
    tiles, origins = cut_tiles(block, plans)
    assert tiles.shape == (2 * 9, 1, 8, 5)
    assert origins[4] == (4, 3)
    # batch entry 1, tile 4 reads rows 4..12 and columns 3..8 of the padded block
    np.testing.assert_array_equal(tiles[9 + 4], block[1, :, 4:12, 3:8])
    back = assemble(tiles, origins, plans, batch=2, out_shape=(10, 9))  # identity model
    np.testing.assert_array_equal(back, data)


def test_assemble_keeps_each_tiles_core_only():
    plans = [AxisPlan(length=6, stride=3, halo=1)]
    tiles, origins = cut_tiles(np.zeros((1, 1, 8)), plans)
    # a "model" writing its tile number everywhere, halo included: only the cores reach the output
    out = np.stack([np.full((1, 5), k, float) for k in range(len(tiles))])
    assert assemble(out, origins, plans, batch=1, out_shape=(6,)).tolist() == [[[0, 0, 0, 1, 1, 1]]]


def test_single_tile_block_is_neither_copied_nor_stacked():
    plans = [AxisPlan(length=6, stride=8, halo=2)]
    block = np.arange(12.0).reshape(1, 1, 12)
    tiles, origins = cut_tiles(block, plans)
    assert tiles is block and origins == [(0,)]
    out = assemble(tiles, origins, plans, batch=1, out_shape=(6,))
    assert np.shares_memory(out, block) and out.tolist() == [[[2, 3, 4, 5, 6, 7]]]


@pytest.mark.parametrize("length", [1, 7, 64, 257])
def test_every_pixel_is_in_exactly_one_core(length):
    p = AxisPlan.build(length, halo=6, tile=48, size_multiple=4)
    owners = np.zeros(length, int)
    for k in range(p.n_tiles):
        owners[k * p.stride:(k + 1) * p.stride] += 1
    assert owners.tolist() == [1] * length
