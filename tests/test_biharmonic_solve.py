"""The thin-plate solve is skimage's system: the same fill to rounding, on every kind of hole."""

import numpy as np
import pytest
from skimage.restoration import inpaint_biharmonic

from xdl.models import biharmonic_solve
from xdl.models.biharmonic_solve import biharmonic_fill


def _field(shape, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).cumsum(0).cumsum(1)


def _holes(kind, shape, seed):
    rng = np.random.default_rng(seed)
    holes = np.zeros(shape, bool)
    if kind in ("scan lines", "mixed"):  # strips 1-3 rows tall, some across the whole width
        for row in rng.choice(shape[0] - 3, 12, replace=False):
            start = rng.integers(0, shape[1] // 2)
            holes[row:row + rng.integers(1, 4), start:] = True
    if kind in ("blocks", "mixed"):  # a compact hole: a wide band
        holes[5:25, 10:40] = True
    if kind == "mixed":  # and a small one in a corner
        holes[-12:, -9:] = True
    if kind == "speckle":  # isolated pixels and the array's edges
        holes |= rng.random(shape) < 0.3
        holes[:, 0] = holes[0, :15] = True
    return holes


@pytest.mark.parametrize("kind", ["scan lines", "blocks", "mixed", "speckle"])
def test_the_same_fill_as_skimage(kind):
    values = _field((70, 90), 1)
    holes = _holes(kind, values.shape, 2)
    ours, theirs = biharmonic_fill(values, holes), inpaint_biharmonic(values, holes)
    assert np.abs(ours - theirs).max() < 1e-9 * np.abs(values).max()
    assert np.array_equal(ours[~holes], values[~holes])


def test_narrow_and_wide_parts_take_their_solvers(monkeypatch):
    """Scan-line holes go to the banded solver, compact ones to SuperLU, each part on its own."""
    from scipy import linalg
    from scipy.sparse import linalg as sparse_linalg

    calls = []

    def counted(name, solver):
        return lambda *a, **k: calls.append(name) or solver(*a, **k)

    monkeypatch.setattr(linalg, "solve_banded", counted("band", linalg.solve_banded))
    monkeypatch.setattr(sparse_linalg, "spsolve", counted("lu", sparse_linalg.spsolve))
    values = _field((70, 90), 3)
    for kind, expected in (("scan lines", ["band"]), ("blocks", ["lu"]), ("mixed", ["band", "lu"])):
        calls.clear()
        holes = _holes(kind, values.shape, 4)
        out = biharmonic_fill(values, holes)
        assert calls == expected, kind
        assert np.abs(out - inpaint_biharmonic(values, holes)).max() < 1e-9 * np.abs(values).max()
    assert biharmonic_solve.NARROW >= 11  # a scan line's band on a GOES tile


def test_a_failing_band_solve_falls_back_to_superlu(monkeypatch):
    from scipy import linalg

    def singular(*args, **kwargs):
        raise linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(linalg, "solve_banded", singular)
    values = _field((50, 60), 5)
    holes = _holes("scan lines", values.shape, 6)
    assert np.abs(biharmonic_fill(values, holes) - inpaint_biharmonic(values, holes)).max() < 1e-9 * np.abs(values).max()
