"""A tqdm progress bar over the tasks of a dask computation that xdl runs itself."""

from __future__ import annotations

from contextlib import contextmanager

from dask.callbacks import Callback
from tqdm.auto import tqdm


class _TqdmCallback(Callback):
    def __init__(self, description: str):
        super().__init__()
        self.description = description
        self.bar = None

    def _start_state(self, dsk, state):
        total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        self.bar = tqdm(total=total, desc=self.description, unit="task")

    def _posttask(self, key, result, dsk, state, worker_id):
        self.bar.update(1)

    def _finish(self, dsk, state, errored):
        if self.bar is not None:
            self.bar.close()


@contextmanager
def progress_bar(description: str = "xdl"):
    """Show a progress bar for dask computations (threaded/synchronous schedulers) in the block.

    >>> import dask.array as da
    >>> with progress_bar("sum"):
    ...     _ = da.ones(10, chunks=5).sum().compute()
    """
    with _TqdmCallback(description):
        yield
