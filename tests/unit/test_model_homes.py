"""Where models live (xdl.modelfile, xdl.models.{zoo,pretrained,resolve}), the one default-model
resolution, the engine's run options and the one normaliser."""

import ast
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import xdl
from xdl import normalize
from xdl.engine.options import DEFAULT_TILE, RunOptions
from xdl.engine.spec import engine_spec
from xdl.errors import InputError
from xdl.models import pretrained
from xdl.models.resolve import model_key, model_label, resolve_model

PACKAGE = Path(xdl.__file__).parent


def _xdl_imports(path: Path) -> tuple[set, set]:
    """(top-level third-party modules, xdl module files) that ``path`` imports anywhere in it."""
    outside, inside = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            outside |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            outside.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            base = path.parent
            for _ in range(node.level - 1):
                base = base.parent
            parts = (node.module or "").split(".") if node.module else []
            target = base.joinpath(*parts)
            names = [a.name for a in node.names] if not parts else [None]
            for name in names:
                t = target / name if name else target
                for cand in (t.with_suffix(".py"), t / "__init__.py"):
                    if cand.exists():
                        inside.add(cand)
    return outside, inside


def test_models_package_imports_neither_xarray_nor_dask():
    # Followed through every xdl module it reaches (modelfile, modelcard, modelformat, errors, ...),
    # function-level imports included; the package root's own imports (the accessor) aside.
    seen, todo, third = set(), list((PACKAGE / "models").glob("*.py")), set()
    while todo:
        p = todo.pop()
        if p in seen or p == PACKAGE / "__init__.py":
            continue
        seen.add(p)
        outside, inside = _xdl_imports(p)
        third |= outside
        todo.extend(inside)
    assert PACKAGE / "modelfile.py" in seen and PACKAGE / "models" / "resolve.py" in seen
    assert not third & {"xarray", "dask", "distributed"}, sorted(third)


def test_public_names_of_the_model_homes():
    assert xdl.zoo is xdl.models.zoo and xdl.pretrained is xdl.models.pretrained
    assert xdl.Model is xdl.modelfile.Model and xdl.load_model is xdl.modelfile.load_model
    assert xdl.zoo.list() == ["fill-unet", "mlp", "pconv-unet", "pix2pix", "unet"]
    assert pretrained.path("fill-default") == PACKAGE / "weights" / "fill-default.safetensors"
    # `import xdl` and listing the bundled models load no torch (about 2 s); the zoo does (it builds models).
    code = ("import sys, xdl; a = 'torch' in sys.modules; xdl.pretrained.names(); b = 'torch' in sys.modules; "
            "xdl.zoo.list(); print(a, b, 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["False", "False", "True"]


def test_default_model_is_resolved_in_one_place(monkeypatch, tmp_path):
    bundled = resolve_model(None, default=pretrained.DEFAULT_INPAINT)
    assert model_key(bundled) == model_key(pretrained.load()) and model_label(bundled) == "fill-context"
    assert resolve_model(bundled) is bundled
    with pytest.raises(InputError, match="got NoneType"):
        resolve_model(None)  # a verb without a default (predict)
    monkeypatch.setattr(pretrained, "names", lambda: [])  # an install without the weights
    field = xr.DataArray(np.ones((32, 32), "f4"), dims=("y", "x"), name="sst")
    calls = {"inpaint": lambda: xdl.inpaint.inpaint(field),
             "evaluate": lambda: xdl.evaluate.evaluate(field),
             "demo": lambda: xdl.demo.run(out_dir=tmp_path / "demo", size=32, verbose=False)}
    for verb, call in calls.items():
        with pytest.raises(InputError, match="no bundled default model 'fill-context' is installed") as e:
            call()
        assert "model" in str(e.value).split("installed with this xdl;")[1], verb  # says what to pass
    assert not (tmp_path / "demo" / "filled.zarr").exists()


def test_run_options_are_checked_and_defaulted():
    with pytest.raises(InputError, match=r"tile=0: must be between 1 and 65536"):
        RunOptions.check(device="cpu", tile=0)
    with pytest.raises(InputError, match="nan_policy='zero'"):
        RunOptions.check(device="cpu", nan_policy="zero")
    spec = engine_spec(xdl.zoo.create("unet", in_channels=1, depth=2, base_channels=4))
    run = RunOptions.build(spec, "cpu", "auto", None, None, None, threads=2)
    assert (run.device.type, run.tile, run.batch_size, run.compile, run.threads) == ("cpu", DEFAULT_TILE, None, False, 2)


def test_one_normalization_on_numpy_and_dask_alike():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((3, 2, 40, 30)) * 7 + 250).astype("f4")
    x[0, 1, :5] = np.nan
    x[2, 0, 3, 3] = 3e37  # beyond the fences: clipped in the model's input
    lazy = da.from_array(x, chunks=(1, 2, 20, 30))
    n = normalize.for_input({"kind": "per_sample"}, ["a", "b"], lazy, 2)
    on_dask = np.asarray(n.apply(lazy))
    eager = normalize.Normalization(*(np.asarray(v) for v in (n.mean, n.std, n.lo, n.hi)))
    np.testing.assert_array_equal(eager.apply(x), on_dask)
    assert np.abs(np.nan_to_num(on_dask)).max() < 10  # the 3e37 entered at its fence
    back = normalize.for_output({"kind": "per_sample"}, ["a", "b"], n, lazy, 2).invert(n.apply(lazy))
    ok = np.isfinite(x) & (x < 1e30)
    np.testing.assert_allclose(np.asarray(back)[ok], x[ok], rtol=1e-6)
    with pytest.raises(InputError, match="as many output channels"):
        normalize.for_output({"kind": "per_sample"}, ["a"], n, lazy[:, :1], 2)
    with pytest.raises(InputError, match="unknown normalization kind 'zscore'"):
        normalize.for_input({"kind": "zscore"}, ["a", "b"], lazy, 2)
