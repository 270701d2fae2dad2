"""The engine's fast paths (issue 17) give the general path's numbers bit for bit.

Fast paths: a complete block skips the mask and the zeroing pass (one read pass proves it
complete); a CPU block's batches make one trip to the feeder thread, or none for a near-free
model; ``target_channels`` lets only the target channels' gaps decide which tiles run.
"""

import threading
import warnings

import dask.array as da
import numpy as np
import pytest
import torch

from xdl.engine import graph, runner
from xdl.engine.runner import ModelPayload, ResidentModel, clear_cache
from xdl.engine.spec import EngineSpec, engine_spec
from xdl.engine.tiling import AxisPlan
from xdl.errors import ModelError

CPU = torch.device("cpu")


class Times2(torch.nn.Module):
    in_channels = out_channels = 1
    size_multiple, halo, mode = 1, 0, "spatial"

    def forward(self, x):
        return x * 2


class MaskConv(torch.nn.Module):
    """A convolution of (value, mask): oneDNN kernels, whose sums depend on batch and threads."""

    def __init__(self, channels=1, out=1):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(2 * channels, out, 5, padding=2)

    def forward(self, x, mask):
        return self.conv(torch.cat([x, mask], 1))


def _spec(halo, takes_mask=False, fills_gaps=False, in_channels=1, out_channels=1, target_channels=None):
    return EngineSpec(mode="spatial", in_channels=in_channels, out_channels=out_channels, size_multiple=1,
                      halo=halo, takes_mask=takes_mask, fills_gaps=fills_gaps, target_channels=target_channels)


def _run(values, module, spec, tile, chunks, tiles=graph.TILES_ALL, key="fastpath", **options):
    plans = [AxisPlan.build(n, halo=spec.halo, tile=tile) for n in values.shape[-2:]]
    x = da.from_array(values, chunks=chunks)
    out = graph.apply_model(x, graph.payload_for(module, key), spec, plans, device=CPU, autocast=None,
                            batch_size=1, tiles=tiles, threads=torch.get_num_threads(), **options)
    return out.compute(scheduler="threads")


CASES = [  # model, spec, tile: one tile per block with no halo; several tiles with a halo; a mask
    (Times2(), _spec(0), 64),
    (torch.nn.Conv2d(1, 1, 5, padding=2), _spec(4), 24),
    (MaskConv(), _spec(4, takes_mask=True, fills_gaps=True), 24),
    (MaskConv(), _spec(4, takes_mask=True, fills_gaps=False), 40),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_a_complete_block_gives_the_general_paths_numbers(case, monkeypatch):
    module, spec, tile = CASES[case]
    values = np.random.default_rng(case).normal(size=(3, 1, 50, 60)).astype("f4")
    clear_cache()
    fast = _run(values, module, spec, tile, (2, 1, 25, 60), key=f"fast-{case}")
    clear_cache()
    monkeypatch.setattr(graph, "all_finite", lambda a: False)  # every block through the mask path
    general = _run(values, module, spec, tile, (2, 1, 25, 60), key=f"fast-{case}")
    assert np.isfinite(fast).all()
    np.testing.assert_array_equal(fast, general)


def test_blocks_with_gaps_give_the_same_numbers_whatever_the_chunks():
    values = np.random.default_rng(5).normal(size=(3, 1, 50, 60)).astype("f4")
    values[1, 0, 10:20, 5:30] = np.nan  # one block with a gap, the others complete
    module, spec = MaskConv(), _spec(4, takes_mask=True, fills_gaps=True)
    clear_cache()
    whole = _run(values, module, spec, 24, (3, 1, 50, 60), key="gaps")
    pieces = _run(values, module, spec, 24, (1, 1, 25, 30), key="gaps")
    np.testing.assert_array_equal(whole, pieces)


def test_inline_and_feeder_runs_are_bit_identical(monkeypatch):
    """A near-free model runs in the calling thread; a real one in the feeder: same numbers."""
    values = np.random.default_rng(6).normal(size=(4, 1, 40, 40)).astype("f4")
    module, spec = MaskConv(), _spec(4, takes_mask=True, fills_gaps=True)
    results = []
    for seconds in (0.0, 1e9):  # never inline; inline after the first block
        monkeypatch.setattr(runner, "INLINE_SECONDS", seconds)
        clear_cache()
        results.append(_run(values, module, spec, 24, (1, 1, 40, 40), key="inline"))
    np.testing.assert_array_equal(results[0], results[1])


def test_one_trip_to_the_feeder_per_block(monkeypatch):
    monkeypatch.setattr(runner, "INLINE_SECONDS", 0.0)
    clear_cache()
    resident = ResidentModel.get(ModelPayload(Times2(), "trips"), CPU, False)
    feeder = runner.device_feeder(CPU)
    trips = []
    submit = feeder.submit
    monkeypatch.setattr(feeder, "submit", lambda *a, **k: trips.append(1) or submit(*a, **k))
    x = np.arange(5 * 8 * 8, dtype="f4").reshape(5, 1, 8, 8)
    out = resident.run(x, None, None, batch_size=1, out_channels=1, threads=torch.get_num_threads())
    assert len(trips) == 1  # five batches, one trip
    np.testing.assert_array_equal(out, 2 * x)


def test_a_near_free_model_runs_in_the_calling_thread_only_with_its_thread_count(monkeypatch):
    monkeypatch.setattr(runner, "INLINE_SECONDS", 1e9)
    clear_cache()
    seen = []

    class Where(Times2):
        def forward(self, x):
            seen.append(threading.current_thread().name)
            return x * 2

    resident = ResidentModel.get(ModelPayload(Where(), "where"), CPU, False)
    x = np.ones((1, 1, 8, 8), "f4")
    mine = torch.get_num_threads()
    for _ in range(2):
        resident.run(x, None, None, 1, 1, threads=mine)
    assert seen[0].startswith("xdl-feeder") and seen[1] == threading.current_thread().name
    other = 1 if mine > 1 else 2
    try:
        resident.run(x, None, None, 1, 1, threads=other)  # another count: only the feeder sets it
        assert seen[2].startswith("xdl-feeder") and torch.get_num_threads() == mine
    finally:  # the feeder back to this process's count (threads started later copy the last one set)
        monkeypatch.setattr(runner, "INLINE_SECONDS", 0.0)
        resident.run(x, None, None, 1, 1, threads=mine)


def test_all_finite():
    assert graph.all_finite(np.zeros((0, 3), "f4"))
    assert graph.all_finite(np.full(10, 3e38, "f4"))  # the sum overflows: the exact test decides
    for bad in (np.nan, np.inf, -np.inf):
        a = np.ones((4, 5), "f4")
        a[2, 3] = bad
        assert not graph.all_finite(a) and not graph.all_finite(a[:, 1::2])  # a strided view too
    assert graph.all_finite(np.ones((4, 5))[:, ::2])


# --- target_channels: only the targets' gaps make a tile run -------------------------------------

class TwoChannelFill(torch.nn.Module):
    """Fills channel 0 from (channel 0, a context channel 1): 1 target, 2 inputs."""

    in_channels, out_channels, target_channels = 2, 1, 1
    size_multiple, halo, mode, takes_mask, fills_gaps = 1, 2, "spatial", True, True

    def forward(self, x, mask):
        return x[:, :1] + 10 * mask[:, 1:]


def test_target_channels_is_read_from_the_module_or_the_card():
    assert engine_spec(TwoChannelFill()).target_channels == 1
    assert engine_spec(torch.nn.Conv2d(1, 1, 3, padding=1)).target_channels is None

    class Card:
        card = {"target_channels": 2}
        module = TwoChannelFill()

    assert engine_spec(Card()).target_channels == 2
    Card.card = {"target_channels": 3}
    with pytest.raises(ModelError, match="target_channels=3"):
        engine_spec(Card())


def test_only_gaps_in_the_target_channels_make_tiles_run():
    values = np.ones((1, 2, 16, 32), "f4")
    values[0, 1, 4:8, 4:8] = np.nan  # a gap in the context channel only, left half
    values[0, 0, 4:8, 20:24] = np.nan  # a gap in the target, right half
    spec = engine_spec(TwoChannelFill())
    clear_cache()
    out = _run(values, TwoChannelFill(), spec, 20, (1, 2, 16, 16), tiles=graph.TILES_GAPS, key="targets")[0, 0]
    assert np.isnan(out[:, :16]).all()  # no target gap: the tile does not run
    assert np.isfinite(out[:, 16:]).all()  # the target's gap: the tile runs
    everything = _spec(2, takes_mask=True, fills_gaps=True, in_channels=2)  # target_channels None
    out = _run(values, TwoChannelFill(), everything, 20, (1, 2, 16, 16), tiles=graph.TILES_GAPS, key="targets")[0, 0]
    assert np.isfinite(out).all()  # a context gap counts as a gap too


def test_valid_context_counts_as_input_for_a_target_without_any():
    values = np.ones((1, 2, 16, 16), "f4")
    values[0, 0] = np.nan  # no valid target pixel in the tile; the context is complete
    v_tiles = np.isfinite(values)
    plans = [AxisPlan.build(16, halo=0, tile=16)] * 2
    needed = graph.needed_tiles(v_tiles, 1, plans, graph.TILES_GAPS, target_channels=1)
    assert needed.tolist() == [True]
    values[0, 1] = np.nan  # nothing valid at all: nothing to run
    assert graph.needed_tiles(np.isfinite(values), 1, plans, graph.TILES_GAPS, 1).tolist() == [False]


# --- one gather layer instead of pad + rechunk + overlap ----------------------------------------

@pytest.mark.parametrize("chunks", [(2, 1, 10, 12), (1, 1, 3, 5), (2, 1, 7, 12), (1, 1, 20, 1)])
@pytest.mark.parametrize("periodic", [False, True])
def test_gathered_blocks_are_the_padded_and_overlapped_blocks(chunks, periodic):
    values = np.random.default_rng(7).normal(size=(2, 1, 20, 18)).astype("f4")
    plans = [AxisPlan(length=20, stride=3, halo=3), AxisPlan(length=18, stride=4, halo=2, periodic=periodic)]
    x = da.from_array(values, chunks=chunks)
    gathered, out_chunks = graph.gather_padded(x, plans, first_axis=2)
    padded, expected_chunks = graph.pad_and_align(x, plans, first_axis=2)
    padded = da.overlap.overlap(padded, depth={0: 0, 1: 0, 2: 3, 3: 2}, boundary="none")
    assert out_chunks == expected_chunks and gathered.chunks == padded.chunks
    for block in np.ndindex(*gathered.numblocks):
        np.testing.assert_array_equal(gathered.blocks[block].compute(), padded.blocks[block].compute())


def test_no_gather_layer_when_the_source_blocks_are_the_tiles_input():
    x = da.zeros((4, 1, 32, 48), chunks=(2, 1, 16, 48))
    plans = [AxisPlan(length=32, stride=16, halo=0), AxisPlan(length=48, stride=48, halo=0)]
    gathered, _ = graph.gather_padded(x, plans, first_axis=2)
    assert gathered is x


# --- a near-free CPU model runs a block as one batch where that was checked to give the same bytes --

class SampleCoupled(Times2):
    """Each sample minus the batch's mean: one batch gives other numbers than batches of one."""

    def forward(self, x):
        return x - x.mean(0, keepdim=True)


def _block(resident, x, threads):
    return resident.run(x, None, None, batch_size=1, out_channels=1, threads=threads)


def test_one_batch_only_after_the_first_block_of_its_shape_gave_the_same_bytes(monkeypatch):
    monkeypatch.setattr(runner, "INLINE_SECONDS", 1e9)
    clear_cache()
    calls = []

    class Counted(Times2):
        def forward(self, x):
            calls.append(len(x))
            return x * 2

    resident = ResidentModel.get(ModelPayload(Counted(), "one-batch"), CPU, False)
    x = np.random.default_rng(8).normal(size=(4, 1, 8, 8)).astype("f4")
    threads = torch.get_num_threads()
    for _ in range(3):
        np.testing.assert_array_equal(_block(resident, x, threads), 2 * x)
    # first block: batches of one (and timed); second: batches of one, then the check; third: one batch
    assert calls == [1, 1, 1, 1] + [1, 1, 1, 1, 4] + [4]
    assert resident.one_batch == {((4, 1, 8, 8), "<f4", None, 1, 1, threads): True}
    _block(resident, x[:3], threads)  # another shape: checked afresh (the model is known near-free)
    assert calls[-4:] == [1, 1, 1, 3] and len(resident.one_batch) == 2


def test_a_model_that_couples_its_samples_keeps_its_batches(monkeypatch):
    monkeypatch.setattr(runner, "INLINE_SECONDS", 1e9)
    clear_cache()
    resident = ResidentModel.get(ModelPayload(SampleCoupled(), "coupled"), CPU, False)
    x = np.random.default_rng(9).normal(size=(4, 1, 8, 8)).astype("f4")
    threads = torch.get_num_threads()
    outs = [_block(resident, x, threads) for _ in range(4)]
    assert list(resident.one_batch.values()) == [False]
    for out in outs:
        np.testing.assert_array_equal(out, np.zeros_like(x))  # each sample alone: minus itself


def test_a_model_that_fails_on_a_batch_keeps_its_batches(monkeypatch):
    monkeypatch.setattr(runner, "INLINE_SECONDS", 1e9)
    clear_cache()

    class OneAtATime(Times2):
        def forward(self, x):
            assert len(x) == 1, "one sample at a time"
            return x * 2

    resident = ResidentModel.get(ModelPayload(OneAtATime(), "one-at-a-time"), CPU, False)
    x = np.ones((3, 1, 8, 8), "f4")
    for _ in range(3):
        np.testing.assert_array_equal(_block(resident, x, torch.get_num_threads()), 2 * x)
    assert list(resident.one_batch.values()) == [False]


def test_masks_and_slow_models_never_run_as_one_batch(monkeypatch):
    monkeypatch.setattr(runner, "INLINE_SECONDS", 1e9)
    clear_cache()
    resident = ResidentModel.get(ModelPayload(MaskConv(), "masked"), CPU, True)
    x, mask = np.ones((3, 1, 8, 8), "f4"), np.ones((3, 1, 8, 8), "f4")
    for _ in range(3):
        resident.run(x, mask, None, 1, 1, threads=torch.get_num_threads())
    assert resident.one_batch == {}
    monkeypatch.setattr(runner, "INLINE_SECONDS", 0.0)
    slow = ResidentModel.get(ModelPayload(Times2(), "slow"), CPU, False)
    for _ in range(3):
        _block(slow, x, torch.get_num_threads())
    assert slow.one_batch == {}


ONE_BATCH_CASES = [  # near-free models, with and without gaps; a conv under nan_policy="fill"
    (Times2(), _spec(0), 64, {}),
    (SampleCoupled(), _spec(0), 64, {}),
    (torch.nn.Conv2d(1, 1, 5, padding=2), _spec(4), 24, {}),
    (torch.nn.Conv2d(1, 1, 5, padding=2), _spec(4), 24, {"nan_policy": "fill"}),
    (MaskConv(), _spec(4, takes_mask=True, fills_gaps=True), 24, {}),
]


@pytest.mark.parametrize("case", range(len(ONE_BATCH_CASES)))
def test_outputs_are_the_batches_of_ones_bytes_for_any_chunks(case, monkeypatch):
    module, spec, tile, options = ONE_BATCH_CASES[case]
    values = np.random.default_rng(10 + case).normal(size=(8, 1, 50, 60)).astype("f4")
    values[2, 0, 10:20, 5:30] = np.nan
    values[5, 0, ::7] = np.nan
    monkeypatch.setattr(runner, "INLINE_SECONDS", 0.0)  # never near-free: batches of one throughout
    clear_cache()
    reference = _run(values, module, spec, tile, (8, 1, 50, 60), key=f"ones-{case}", **options)
    monkeypatch.setattr(runner, "INLINE_SECONDS", 1e9)  # near-free: one batch wherever checked
    for chunks in ((1, 1, 50, 60), (2, 1, 50, 60), (4, 1, 25, 60), (8, 1, 50, 60), (3, 1, 50, 30)):
        clear_cache()
        out = _run(values, module, spec, tile, chunks, key=f"ones-{case}", **options)
        assert out.tobytes() == reference.tobytes(), chunks


def test_all_finite_of_a_read_only_block_warns_nothing():
    a = np.ones((4, 5), "f4")
    b = a.copy()
    b[1, 1] = np.nan
    a.flags.writeable = b.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert graph.all_finite(a) and not graph.all_finite(b)


def test_points_are_never_checked_and_checks_stop_after_a_few_shapes(monkeypatch):
    monkeypatch.setattr(runner, "INLINE_SECONDS", 1e9)
    monkeypatch.setattr(runner, "ONE_BATCH_CHECKS", 2)
    clear_cache()
    resident = ResidentModel.get(ModelPayload(torch.nn.Linear(3, 1), "points"), CPU, False)
    for n in (10, 11, 12):  # points: a count that changes with every block's gaps
        resident.run(np.ones((n, 3), "f4"), None, None, 4, 1, threads=torch.get_num_threads())
    assert resident.one_batch == {}
    tiles = ResidentModel.get(ModelPayload(Times2(), "few-shapes"), CPU, False)
    for n in (2, 2, 3, 4, 5, 5):
        x = np.ones((n, 1, 8, 8), "f4")
        np.testing.assert_array_equal(_block(tiles, x, torch.get_num_threads()), 2 * x)
    assert [key[0][0] for key in tiles.one_batch] == [2, 3]  # the first block only timed it


@pytest.mark.parametrize("chunks", [(2, 3, 4, 5), (2, 1, 4, 5), (1, 2, 4, 5)])
def test_channel_layers_are_getitem_and_expand_dims(chunks):
    x = da.from_array(np.random.default_rng(11).normal(size=(2, 3, 4, 5)).astype("f4"), chunks=chunks)
    for i in range(3):
        np.testing.assert_array_equal(graph.take_index(x, i, 1).compute(), x[:, i].compute())
    np.testing.assert_array_equal(graph.insert_axis(x, 2).compute(), x.compute()[:, :, None])


def _near_free(module, key, monkeypatch):
    """A resident copy known near-free (its first block timed), as after a first block."""
    monkeypatch.setattr(runner, "INLINE_SECONDS", 1e9)
    clear_cache()
    resident = ResidentModel.get(ModelPayload(module, key), CPU, False)
    resident.block_seconds = 0.0
    return resident


def test_a_complete_block_is_checked_with_its_output_after_the_call(monkeypatch):
    calls = []

    class Counted(Times2):
        def forward(self, x):
            calls.append(len(x))
            return x * 2

    resident = _near_free(Counted(), "complete", monkeypatch)
    threads = torch.get_num_threads()
    x = np.random.default_rng(12).normal(size=(3, 1, 8, 8)).astype("f4")
    np.testing.assert_array_equal(resident.run_complete(x, None, 1, 1, threads), 2 * x)
    gappy = x.copy()
    gappy[1, 0, 2, 3] = np.nan
    calls.clear()
    assert resident.run_complete(gappy, None, 1, 1, threads) is None  # the caller masks it
    assert calls == [3]  # called before the check (one batch, as the complete block showed it may)
    huge = np.full((3, 1, 8, 8), 3e38, "f4")  # finite input, inf output
    out = resident.run_complete(huge, None, 1, 1, threads)
    assert np.isnan(out).all()  # inf is no value: NaN, as on the checked path


def test_a_block_with_gaps_decides_nothing_about_batching(monkeypatch):
    resident = _near_free(SampleCoupled(), "coupled-gaps", monkeypatch)
    threads = torch.get_num_threads()
    nan = np.full((4, 1, 8, 8), np.nan, "f4")  # both ways all NaN: the same bytes, proving nothing
    for _ in range(2):
        assert resident.run_complete(nan, None, 1, 1, threads) is None
    assert resident.one_batch == {}
    x = np.random.default_rng(13).normal(size=(4, 1, 8, 8)).astype("f4")
    for _ in range(2):
        np.testing.assert_array_equal(resident.run_complete(x, None, 1, 1, threads), np.zeros_like(x))
    assert list(resident.one_batch.values()) == [False]


def test_a_model_that_fails_on_nan_gets_its_gaps_masked(monkeypatch):
    class NoNaN(Times2):
        def forward(self, x):
            if torch.isnan(x).any():
                raise ValueError("NaN in the input")
            return x * 2

    resident = _near_free(NoNaN(), "no-nan", monkeypatch)
    threads = torch.get_num_threads()
    gappy = np.ones((2, 1, 8, 8), "f4")
    gappy[0, 0, 0, 0] = np.nan
    assert resident.run_complete(gappy, None, 1, 1, threads) is None
    values = np.random.default_rng(14).normal(size=(2, 1, 8, 8)).astype("f4")
    values[0, 0, :, 0] = np.nan
    out = _run(values, NoNaN(), _spec(0), 8, (1, 1, 8, 8), key="no-nan-graph")
    np.testing.assert_array_equal(out[1], 2 * values[1])
    assert np.isnan(out[0, 0, :, 0]).all() and np.array_equal(out[0, 0, :, 1:], 2 * values[0, 0, :, 1:])


def test_one_task_a_block_around_a_one_channel_model():
    """The channel axis put in before a one-variable model and taken out after it are views in the
    model's own task: no layers that dask would fuse (and order again in every task)."""
    import dask

    values = np.random.default_rng(15).normal(size=(6, 16, 16)).astype("f4")
    x = da.from_array(values, chunks=(2, 16, 16))
    plans = [AxisPlan.build(16, halo=0, tile=16) for _ in range(2)]
    stacked = graph.insert_axis(x, 1)
    out = graph.apply_model(stacked, graph.payload_for(Times2(), "one-task"), _spec(0), plans, device=CPU,
                            autocast=None, batch_size=1, threads=torch.get_num_threads())
    assert out.shape == (6, 1, 16, 16)
    field = graph.take_index(out, 0, 1)
    (optimized,) = dask.optimize(field)
    tasks = dict(optimized.__dask_graph__())
    assert len(tasks) == 3 + 3 + 1  # source blocks, model blocks, the model
    np.testing.assert_array_equal(field.compute(), 2 * values)
    np.testing.assert_array_equal(out.compute(), 2 * values[:, None])  # the channel-ful output too


class DoublesInPlace(Times2):
    """Writes into its input (as ReLU(inplace=True) as a first layer would)."""

    def forward(self, x):
        return x.mul_(2)


def test_a_model_that_writes_into_its_input_never_changes_the_users_array():
    clear_cache()
    values = np.random.default_rng(16).normal(size=(6, 16, 16)).astype("f4")
    values[2, 3:5] = np.nan
    kept = values.copy()
    for _ in range(2):  # the first call sees copies and finds out; later ones get copies too
        out = _run(values[:, None], DoublesInPlace(), _spec(0), 16, (2, 1, 16, 16), key="in-place")
        np.testing.assert_array_equal(values, kept)
        np.testing.assert_array_equal(out[:, 0], 2 * kept)
    resident = ResidentModel.get(ModelPayload(DoublesInPlace(), "in-place"), CPU, False)
    assert resident.writes_input is True


def test_a_write_into_the_input_after_the_first_call_is_an_error(monkeypatch):
    class ZeroesNaNInPlace(Times2):
        def forward(self, x):
            if torch.isnan(x).any():
                x.nan_to_num_(0.0)  # writes only on some blocks: the first one is no proof
            return x * 2

    resident = _near_free(ZeroesNaNInPlace(), "writes-later", monkeypatch)
    threads = torch.get_num_threads()
    x = np.ones((2, 1, 8, 8), "f4")
    np.testing.assert_array_equal(resident.run(x, None, None, 1, 1, threads=threads), 2 * x)
    assert resident.writes_input is False
    gappy = x.copy()
    gappy[0, 0, 0, 0] = np.nan
    with pytest.raises(ModelError, match="wrote into its input"):
        resident.run_complete(gappy, None, 1, 1, threads)  # never masked and run again from changed data


def test_resident_models_are_bounded_and_can_be_cleared(monkeypatch):
    """Every distinct model predicted stayed resident for the life of the process (8 UNets: +70 MB
    a worker; probe). Beyond MAX_RESIDENT the least recently used go once idle IDLE_SECONDS (never
    sooner: one graph over 10 models made 399 copies; review); xdl.clear_cache() frees all."""
    import numpy as np
    import torch
    import xarray as xr

    import xdl
    from xdl.engine import runner

    ds = xr.Dataset({"t": (("y", "x"), np.random.default_rng(0).normal(size=(16, 16)).astype("f4"))})
    def sweep(count):
        for i in range(count):
            net = torch.nn.Conv2d(1, 1, 1)
            with torch.no_grad():
                net.weight.fill_(float(i + 1))
            out = ds.dl.predict(net, inputs=["t"], outputs=["u"])
            np.testing.assert_allclose(out.u.values, ds.t.values * (i + 1) + float(net.bias), rtol=1e-5)

    xdl.clear_cache()
    sweep(runner.MAX_RESIDENT + 3)  # all used within the last minute: kept
    assert len(runner._RESIDENT) == runner.MAX_RESIDENT + 3
    xdl.clear_cache()
    monkeypatch.setattr(runner, "IDLE_SECONDS", 0.0)
    sweep(runner.MAX_RESIDENT + 3)
    assert len(runner._RESIDENT) == runner.MAX_RESIDENT
    xdl.clear_cache()
    assert len(runner._RESIDENT) == 0
