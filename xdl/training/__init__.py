"""Training internals behind :func:`xdl.fit.fit`.

``config`` (TrainConfig), ``splits`` (train/validation split), ``data`` (windows, statistics,
normalisation, samplers, gap generators), ``losses``, ``tasks`` (one task per kind of training),
``loop`` (the epoch loop), ``checkpoint`` (save / read / restore) and ``card`` (the model card).
"""
