"""Training internals behind :func:`xdl.fit.fit`.

``config`` (TrainConfig), ``splits`` (train/validation split), ``data`` (windows, statistics,
normalisation, samplers, gap generators), ``context`` (context variables, static fields and
neighbouring time steps as extra channels), ``losses``, ``tasks`` (one task per kind of training),
``loop`` (the epoch loop), ``calibration`` (the sigma head's post-hoc scale), ``checkpoint``
(save / read / restore) and ``card`` (the model card).
"""
