"""xdl.io: resumable zarr writes (what a store is a write of, resuming) and the file helpers."""

import json
import os

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import xdl.io.zarr

from xdl.errors import InputError, OutputExistsError
from xdl.io.files import input_paths, is_zarr, refuse_existing, refuse_overlap, replace_atomically
from xdl.io.zarr import JOB_NAME, LOG_NAME, store_status, to_zarr_resumable

VALUES = np.arange(24.0).reshape(4, 6)


@pytest.fixture(autouse=True)
def one_chunk_regions(monkeypatch):
    """Regions of one chunk each, as a store of big chunks has (small ones are grouped: see
    test_thin_chunks_are_written_in_regions_of_at_least_min_region_bytes)."""
    monkeypatch.setattr(xdl.io.zarr, "MIN_REGION_BYTES", 0)


def _dataset(values=VALUES, fail_at=None):
    """Four 1-row regions along time; ``fail_at``: the region whose computation raises once."""
    state = {"armed": fail_at is not None}

    def block(x, block_info=None):
        if state["armed"] and block_info[0]["chunk-location"][0] == fail_at:
            state["armed"] = False
            raise KeyboardInterrupt("interrupted")
        return x

    data = da.from_array(values, chunks=(1, 6)).map_blocks(block, dtype=values.dtype)
    return xr.Dataset({"v": (("time", "x"), data)}, coords={"time": np.arange(4), "x": np.arange(6) * 0.5})


def _log(path):
    return json.loads((path / LOG_NAME).read_text())


def test_a_write_records_every_region_and_completes(tmp_path):
    path = tmp_path / "out.zarr"
    to_zarr_resumable(_dataset(), path, job={"model": "abc", "tile": 256})
    assert store_status(path) == "complete" and _log(path)["done"] == [0, 1, 2, 3]
    assert json.loads((path / JOB_NAME).read_text()) == {"model": "abc", "tile": 256}
    back = xr.open_zarr(path)
    np.testing.assert_array_equal(back.v.values, VALUES)
    assert back.x.values.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


def test_an_interrupted_write_resumes_where_it_stopped(tmp_path):
    path = tmp_path / "out.zarr"
    with pytest.raises(KeyboardInterrupt):
        to_zarr_resumable(_dataset(fail_at=2), path)
    assert store_status(path) == "incomplete" and _log(path)["done"] == [0, 1]
    # the resumed run rewrites only regions 2 and 3: rows 0-1 come from the first run, not this one
    to_zarr_resumable(_dataset(VALUES + 100), path, resume=True)
    assert store_status(path) == "complete" and _log(path)["done"] == [0, 1, 2, 3]
    got = xr.open_zarr(path).v.values
    np.testing.assert_array_equal(got[:2], VALUES[:2])
    np.testing.assert_array_equal(got[2:], VALUES[2:] + 100)


def test_a_store_that_fails_before_its_first_region_is_removed(tmp_path):
    path = tmp_path / "out.zarr"
    with pytest.raises(KeyboardInterrupt):
        to_zarr_resumable(_dataset(fail_at=0), path)
    assert not path.exists()


def test_resume_refuses_another_job_naming_what_changed(tmp_path):
    path = tmp_path / "out.zarr"
    to_zarr_resumable(_dataset(), path, job={"--mask": "DQF == 0", "model": "abc"})
    with pytest.raises(InputError, match=r"--mask changed: 'DQF == 0' -> 'DQF < 2'") as err:
        to_zarr_resumable(_dataset(), path, resume=True, job={"--mask": "DQF < 2", "model": "abc"})
    assert "model changed" not in str(err.value) and "--overwrite" in str(err.value)
    # the same job resumes: nothing left to write, the values stay
    to_zarr_resumable(_dataset(VALUES * 0), path, resume=True, job={"model": "abc", "--mask": "DQF == 0"})
    np.testing.assert_array_equal(xr.open_zarr(path).v.values, VALUES)


@pytest.mark.parametrize("change", ["dtype", "chunks", "shape"])
def test_resume_refuses_another_layout(tmp_path, change):
    path = tmp_path / "out.zarr"
    to_zarr_resumable(_dataset(), path)
    other = {"dtype": lambda: _dataset(VALUES.astype("f4")),
             "chunks": lambda: _dataset().chunk({"time": 2}),
             "shape": lambda: _dataset().isel(x=slice(0, 5))}[change]()
    with pytest.raises(InputError, match="variables, shapes or chunks changed"):
        to_zarr_resumable(other, path, resume=True)


def test_existing_outputs_are_kept_unless_replaced(tmp_path):
    path = tmp_path / "out.zarr"
    path.mkdir()
    (path / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="mode='w'"):
        to_zarr_resumable(_dataset(), path)
    with pytest.raises(InputError, match="no progress log"):
        to_zarr_resumable(_dataset(), path, resume=True)
    assert (path / "keep.txt").exists()
    to_zarr_resumable(_dataset(), path, mode="w")
    assert not (path / "keep.txt").exists() and store_status(path) == "complete"


def test_store_status_of_foreign_stores(tmp_path):
    xr.Dataset({"v": ("x", np.zeros(3))}).to_zarr(tmp_path / "plain.zarr")
    assert store_status(tmp_path / "plain.zarr") is None and store_status(tmp_path / "missing.zarr") is None
    assert is_zarr(tmp_path / "plain.zarr") and is_zarr("new.zarr") and not is_zarr(tmp_path)


def test_replace_atomically_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with replace_atomically(target) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]


def test_overwrite_and_overlap_checks(tmp_path):
    (tmp_path / "in").mkdir()
    for name in ("b.nc", "a.nc"):
        (tmp_path / "in" / name).write_text("")
    assert [os.path.basename(p) for p in input_paths(str(tmp_path / "in" / "*.nc"))] == ["a.nc", "b.nc"]
    with pytest.raises(OutputExistsError, match="already exists; pass --overwrite"):
        refuse_existing(tmp_path / "in" / "a.nc")
    refuse_existing(tmp_path / "new.zarr")
    with pytest.raises(InputError, match="the output contains an input"):
        refuse_overlap(tmp_path / "in", [str(tmp_path / "in" / "*.nc")])
    with pytest.raises(InputError, match="the output lies inside an input"):
        refuse_overlap(tmp_path / "in" / "out.zarr", [tmp_path / "in"])
    refuse_overlap(tmp_path / "out.zarr", [tmp_path / "in", None])


def test_thin_chunks_are_written_in_regions_of_at_least_min_region_bytes(tmp_path, monkeypatch):
    """Each region is a compute of its own, and a model's tiles reach across many thin chunks:
    written a row a region, a row-chunked scene was filled once per row (160 times; probe)."""
    values = np.arange(40 * 6, dtype="f8").reshape(40, 6)
    ds = xr.Dataset({"v": (("time", "x"), da.from_array(values, chunks=(1, 6)))})
    monkeypatch.setattr(xdl.io.zarr, "MIN_REGION_BYTES", 10 * 6 * 8)  # 10 rows of float64
    computes = []
    real = xr.Dataset.to_zarr

    def counted(self, *args, **kwargs):
        if kwargs.get("region") is not None:
            computes.append(kwargs["region"]["time"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_zarr", counted)
    path = tmp_path / "out.zarr"
    to_zarr_resumable(ds, path)
    assert computes == [slice(0, 10), slice(10, 20), slice(20, 30), slice(30, 40)]
    np.testing.assert_array_equal(xr.open_zarr(path).v.values, values)
    computes.clear()
    to_zarr_resumable(ds, path, mode="w", regions_per_step=4)  # asked for: 4 chunks a region
    assert len(computes) == 10


def test_a_killed_runs_temporary_is_removed_by_the_next_write(tmp_path):
    """A SIGKILLed netCDF write left its hidden temporary (as large as the output) for good (found in
    session 34). The next write of the same path removes one of a process that is gone; one of a
    live process (a run still writing) stays."""
    import subprocess
    import sys

    from xdl.io import files

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stem = f".out.nc.tmp-{files._HOST}-"
    dead, live = tmp_path / f"{stem}{gone.pid}", tmp_path / f"{stem}{os.getppid()}"
    dead.write_text("half a file")
    live.write_text("being written")
    with replace_atomically(tmp_path / "out.nc") as tmp:
        with open(tmp, "w") as f:
            f.write("done")
    assert sorted(os.listdir(tmp_path)) == sorted(["out.nc", live.name])
