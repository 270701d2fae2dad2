"""xdl.engine.graph: padding and chunk alignment on dask arrays, and a model mapped over blocks."""

import dask.array as da
import numpy as np
import pytest
import torch

from xdl.engine import graph
from xdl.engine.runner import clear_cache
from xdl.engine.spec import EngineSpec
from xdl.engine.tiling import AxisPlan


def _reference_pad(values, plans):
    """The padded array in numpy: the index of every padded position, per axis."""
    return values[(slice(None),) + np.ix_(*[p.padded_index() for p in plans])]


def test_pad_and_align_pads_mirror_and_wrap_and_aligns_chunks():
    py, px = AxisPlan(length=10, stride=4, halo=2), AxisPlan(length=12, stride=4, halo=2, periodic=True)
    values = np.arange(120.0).reshape(1, 10, 12)
    padded, out_chunks = graph.pad_and_align(da.from_array(values, chunks=(1, 5, 6)), [py, px], first_axis=1)
    assert padded.shape == (1, 16, 16)
    np.testing.assert_array_equal(padded.compute(), _reference_pad(values, [py, px]))
    # user chunks 5 (rows) and 6 (columns) -> the nearest stride multiples, 4 and 8
    assert out_chunks == [(4, 4, 2), (8, 4)]
    # each padded chunk is its output chunk plus the halo (first, last) and the last tile's rounding
    assert padded.chunks[1:] == ((6, 4, 6), (10, 6))
    assert padded.chunks[1:] == (py.padded_chunks(out_chunks[0]), px.padded_chunks(out_chunks[1]))


def test_core_chunks_are_the_users_not_dragged_down_by_the_pads():
    plan = AxisPlan(length=40, stride=4, halo=2)
    values = np.arange(40.0)[None]
    padded, out_chunks = graph.pad_and_align(da.from_array(values, chunks=(1, 20)), [plan], first_axis=1)
    # before: the 2-sample pads entered the median, (2, 20, 20, 2) -> 11 -> 12-sample chunks
    assert out_chunks == [(20, 20)] and padded.chunks[1] == (22, 22)
    np.testing.assert_array_equal(padded.compute(), _reference_pad(values, [plan]))


@pytest.mark.parametrize("chunks", [(1, 10, 12), (1, 3, 5), (1, 7, 12)])
def test_padded_values_do_not_depend_on_the_chunks(chunks):
    plans = [AxisPlan(length=10, stride=3, halo=3), AxisPlan(length=12, stride=5, halo=2)]
    values = np.random.default_rng(0).normal(size=(1, 10, 12))
    padded, out_chunks = graph.pad_and_align(da.from_array(values, chunks=chunks), plans, first_axis=1)
    np.testing.assert_array_equal(padded.compute(), _reference_pad(values, plans))
    for plan, c in zip(plans, out_chunks):
        assert sum(c) == plan.length and all(size % plan.stride == 0 for size in c[:-1])


class BoxSum(torch.nn.Module):
    """3 x 3 sum: needs a halo of 1."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, bias=False)
        torch.nn.init.ones_(self.conv.weight)

    def forward(self, x):
        return self.conv(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"))


def _spec(fills_gaps=False):
    return EngineSpec(mode="spatial", in_channels=1, out_channels=1, size_multiple=1, halo=1,
                      takes_mask=False, fills_gaps=fills_gaps)


def _box_reference(values, periodic_x):
    """Whole-array 3 x 3 sums with the engine's padding (mirror; wrap along x when periodic)."""
    p = np.pad(values, ((1, 1), (0, 0)), mode="reflect")
    p = np.pad(p, ((0, 0), (1, 1)), mode="wrap" if periodic_x else "reflect")
    return sum(p[i:i + values.shape[0], j:j + values.shape[1]] for i in range(3) for j in range(3))


@pytest.mark.parametrize("periodic_x", [False, True])
def test_apply_model_equals_a_whole_array_call_for_any_chunking(periodic_x):
    clear_cache()
    values = np.random.default_rng(2).normal(size=(20, 18)).astype("f4")
    plans = [AxisPlan.build(20, halo=1, tile=8), AxisPlan.build(18, halo=1, tile=8, periodic=periodic_x)]
    assert plans[0].n_tiles > 1 and plans[1].n_tiles > 1  # several tiles: the halo matters
    payload = graph.payload_for(BoxSum(), "boxsum-test")
    expected = _box_reference(values.astype("f8"), periodic_x)
    for chunks in [(1, 1, 20, 18), (1, 1, 7, 5), (1, 1, 12, 18)]:
        x = da.from_array(values[None, None], chunks=chunks)
        out = graph.apply_model(x, payload, _spec(), plans, device=torch.device("cpu"), autocast=None, batch_size=4)
        assert out.shape == (1, 1, 20, 18) and isinstance(out, da.Array)
        np.testing.assert_allclose(out.compute()[0, 0], expected, rtol=1e-5, atol=1e-5)


def test_a_gap_blanks_the_outputs_within_the_halo_of_a_maskless_model():
    clear_cache()
    values = np.ones((12, 12), "f4")
    values[5, 6] = np.nan
    plans = [AxisPlan.build(12, halo=1, tile=8), AxisPlan.build(12, halo=1, tile=8)]
    payload = graph.payload_for(BoxSum(), "boxsum-test-gap")
    x = da.from_array(values[None, None], chunks=(1, 1, 6, 6))
    out = graph.apply_model(x, payload, _spec(), plans, device=torch.device("cpu"), autocast=None,
                            batch_size=4).compute()[0, 0]
    blank = np.argwhere(np.isnan(out))
    assert blank.min(axis=0).tolist() == [4, 5] and blank.max(axis=0).tolist() == [6, 7] and len(blank) == 9
    assert out[0, 0] == 9.0 and out[11, 11] == 9.0
