"""The ``.dl`` accessor on xarray objects: a stateless front door to xdl's functions."""

from __future__ import annotations

import xarray as xr


class _DLAccessor:
    def __init__(self, obj):
        self._obj = obj

    def predict(self, model, **kwargs):
        """Run a model over this object; see :func:`xdl.predict.predict`."""
        from .predict import predict

        return predict(self._obj, model, **kwargs)

    def inpaint(self, model=None, **kwargs):
        """Fill gaps with a learned gap filler; see :func:`xdl.inpaint.inpaint`."""
        from .inpaint import inpaint

        return inpaint(self._obj, model, **kwargs)

    def fit(self, model, **kwargs):
        """Train a zoo model on this data; see :func:`xdl.fit.fit`."""
        from .fit import fit

        return fit(self._obj, model, **kwargs)

    def evaluate(self, model=None, **kwargs):
        """Score gap filling against classical baselines; see :func:`xdl.evaluate.evaluate`."""
        from .evaluate import evaluate

        return evaluate(self._obj, model, **kwargs)


@xr.register_dataset_accessor("dl")
class DatasetDL(_DLAccessor):
    """``ds.dl``: predict, inpaint, fit and evaluate on a Dataset."""


@xr.register_dataarray_accessor("dl")
class DataArrayDL(_DLAccessor):
    """``da.dl``: predict, inpaint, fit and evaluate on a DataArray."""
