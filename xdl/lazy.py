"""Packages whose submodules load on first use: ``xdl.engine.tiling`` imports ``tiling`` when the
attribute is first read, so importing a package costs nothing (no torch, no dask) until then."""

from __future__ import annotations

import importlib


def attach(package: str, submodules, namespace: dict):
    """``(__getattr__, __dir__)`` for the package ``package`` (its ``__name__``): reading
    ``package.name`` imports ``package.name`` for each name in ``submodules``; ``namespace`` is
    the package's ``globals()``, listed by ``dir()`` with the submodules.

    >>> getattr_, dir_ = attach("xdl.engine", {"tiling"}, {})
    >>> getattr_("tiling").AxisPlan.__name__, dir_()
    ('AxisPlan', ['tiling'])
    """
    names = frozenset(submodules)

    def __getattr__(name):
        if name in names:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | names)

    return __getattr__, __dir__
