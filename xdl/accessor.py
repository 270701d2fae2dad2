"""The ``.dl`` accessor on xarray objects: a stateless front door to xdl's functions.

Each verb is imported when first read (``import xdl`` stays light: torch loads with a model), and
``ds.dl.inpaint`` is that function bound to ``ds``, with its own signature and docstring, so
``help(ds.dl.inpaint)``, ``ds.dl.inpaint?`` and editors' call tips show every option.
"""

from __future__ import annotations

import functools
import importlib
import inspect

import xarray as xr


def _verb(module: str, summary: str) -> property:
    """A property giving ``xdl.<module>.<module>`` bound to the accessor's object."""

    def bound_to(accessor):
        func = getattr(importlib.import_module(f"xdl.{module}"), module)

        @functools.wraps(func)
        def verb(*args, **kwargs):
            return func(accessor._obj, *args, **kwargs)

        signature = inspect.signature(func)
        verb.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])
        return verb

    return property(bound_to, doc=f"{summary}; see :func:`xdl.{module}.{module}`.")


class _DLAccessor:
    def __init__(self, obj):
        self._obj = obj

    predict = _verb("predict", "Run a model over this object")
    inpaint = _verb("inpaint", "Fill gaps with a learned gap filler")
    fit = _verb("fit", "Train a zoo model on this data")
    evaluate = _verb("evaluate", "Score gap filling against classical baselines")


@xr.register_dataset_accessor("dl")
class DatasetDL(_DLAccessor):
    """``ds.dl``: predict, inpaint, fit and evaluate on a Dataset."""


@xr.register_dataarray_accessor("dl")
class DataArrayDL(_DLAccessor):
    """``da.dl``: predict, inpaint, fit and evaluate on a DataArray."""
