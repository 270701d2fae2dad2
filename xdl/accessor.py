"""The ``.dl`` accessor on xarray objects: a stateless front door to xdl's functions.

Each verb's module is imported when the verb is first used or inspected (``import xdl`` stays
light: torch loads with a model), and ``ds.dl.inpaint`` is a bound method with that function's
signature and docstring, so ``help(ds.dl.inpaint)``, ``ds.dl.inpaint?`` and editors' call tips
show every option; like any bound method it pickles (the accessor and the verb's name).
"""

from __future__ import annotations

import importlib
import inspect
import types

import xarray as xr


class _Verb:
    """``xdl.<name>.<name>`` as a method of the accessor: called with the accessor's object."""

    def __init__(self, name: str):
        self.__name__ = self.__qualname__ = name

    def _function(self):
        return getattr(importlib.import_module(f"xdl.{self.__name__}"), self.__name__)

    def __call__(self, accessor, *args, **kwargs):
        return self._function()(accessor._obj, *args, **kwargs)

    def __get__(self, accessor, owner=None):
        return self if accessor is None else types.MethodType(self, accessor)

    def __set__(self, accessor, value):
        # Read-only, which also makes it a data descriptor: doctest then leaves the function's own
        # examples to its module instead of running them here, where its name is not defined.
        raise AttributeError(f"the .dl accessor's {self.__name__!r} cannot be replaced")

    @property
    def __doc__(self):
        return self._function().__doc__

    @property
    def __signature__(self):
        # The function's own (obj, model, *, ...); a bound method drops the first parameter.
        return inspect.signature(self._function())


class _DLAccessor:
    def __init__(self, obj):
        self._obj = obj

    predict = _Verb("predict")
    inpaint = _Verb("inpaint")
    fit = _Verb("fit")
    evaluate = _Verb("evaluate")


@xr.register_dataset_accessor("dl")
class DatasetDL(_DLAccessor):
    """``ds.dl``: predict, inpaint, fit and evaluate on a Dataset."""


@xr.register_dataarray_accessor("dl")
class DataArrayDL(_DLAccessor):
    """``da.dl``: predict, inpaint, fit and evaluate on a DataArray."""
