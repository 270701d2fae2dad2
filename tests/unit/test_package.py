"""The package surface: __all__, the version, lazy submodules, no upward imports."""

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import xdl

PACKAGE = Path(xdl.__file__).parent


def test_all_names_resolve_and_are_unique():
    assert len(xdl.__all__) == len(set(xdl.__all__))
    for name in xdl.__all__:
        assert getattr(xdl, name) is not None, name
    assert {"Model", "load_model", "XdlError", "InputError", "progress", "engine", "conventions"} <= set(xdl.__all__)


def test_version_comes_from_the_installed_metadata():
    assert xdl.__version__ == importlib.metadata.version("xdl")
    from xdl.conventions import cf

    assert f" xdl {xdl.__version__} fill" in cf.history_line("fill")


def test_progress_is_a_lazy_submodule_and_import_xdl_does_not_import_torch():
    # predict's docstring advises xdl.progress.progress_bar(); it used to raise AttributeError
    code = ("import sys, xdl; bar = xdl.progress.progress_bar; x = xdl.engine.tiling.AxisPlan; "
            "d = xdl.conventions.projection.earth_disk; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_module_imports_the_package_root():
    """`from . import __version__` in xdl/x.py (or `from .. import X` in xdl/sub/x.py, `from xdl
    import X`) reaching into xdl/__init__ is an upward import; importing sibling modules is fine."""
    modules = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "__init__.py":
            continue
        depth = len(path.relative_to(PACKAGE).parts)  # the relative level that names the package root
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            to_root = (node.level == depth and node.module is None) or (node.level == 0 and node.module == "xdl")
            names = {a.name for a in node.names} - modules
            if to_root and names:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {sorted(names)}")
    assert not offenders, offenders


def test_accessor_verbs_show_their_options():
    """help(ds.dl.inpaint) showed (model=None, **kwargs) and 'see xdl.inpaint.inpaint': no option for
    help, ``?`` or call tips (probe). The verbs are now the functions bound to the object."""
    import inspect

    import numpy as np
    import xarray as xr

    import xdl

    ds = xr.Dataset({"t": (("y", "x"), np.ones((8, 8), "f4"))})
    for verb, options in {"inpaint": ("model", "context", "time_window", "uncertainty", "mask"),
                          "predict": ("model", "inputs", "outputs"), "fit": ("model", "masks", "epochs"),
                          "evaluate": ("model", "gaps", "baselines")}.items():
        bound = getattr(ds.dl, verb)
        params = inspect.signature(bound).parameters
        assert "obj" not in params and all(o in params for o in options), verb
        assert bound.__doc__ == getattr(getattr(xdl, verb), verb).__doc__
    assert ds.t.dl.inpaint(domain=None).shape == (8, 8)
    import pickle  # a bound verb pickles, as the methods did (review: a nested function did not)
    assert pickle.loads(pickle.dumps(ds.dl.inpaint))(domain=None).t.shape == (8, 8)
