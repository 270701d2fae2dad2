"""Every example runs end to end (small sizes) on the real data."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["goes_gap_fill", "reanalysis_gap_fill", "dask_cluster", "goes_band_repair"])
def test_example_runs(name, tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--small", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=EXAMPLES)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RMSE" in proc.stdout or "valid values identical: True" in proc.stdout
    if name == "goes_band_repair":  # by default the bundled model for context, as inpaint(context=...) takes
        assert "model: fill-context (with the context bands)" in proc.stdout, proc.stdout[-2000:]
