"""Packages whose submodules and names load on first use: ``xdl.engine.tiling`` imports ``tiling``
when the attribute is first read, so importing a package costs nothing (no torch, no dask) until then."""

from __future__ import annotations

import importlib


def attach(package: str, namespace: dict, submodules=(), exports=None):
    """``(__getattr__, __dir__)`` for the package named ``package`` (its ``__name__``).

    Reading ``package.name`` imports the submodule ``package.name`` for each name in ``submodules``
    (or, when it is a dict, the submodule ``package.<value>``: an alias), and returns
    ``package.<module>.name`` for each ``name: module`` of ``exports``. ``namespace`` is the
    package's ``globals()``, listed by ``dir()`` with the lazy names.

    >>> getattr_, dir_ = attach("xdl.engine", {}, {"tiling"}, exports={"AxisPlan": "tiling"})
    >>> getattr_("tiling").__name__, getattr_("AxisPlan").__name__, dir_()
    ('xdl.engine.tiling', 'AxisPlan', ['AxisPlan', 'tiling'])
    """
    modules = dict(submodules) if isinstance(submodules, dict) else {name: name for name in submodules}
    exports = dict(exports or {})

    def __getattr__(name):
        if name in modules:
            return importlib.import_module(f"{package}.{modules[name]}")
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(modules) | set(exports))

    return __getattr__, __dir__
