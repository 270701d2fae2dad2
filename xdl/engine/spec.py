"""What the engine needs to know about a model, read from its card or attributes, else probed.

The engine treats a model as a black box with a few properties: how it is called (mode, mask),
its channels, the spatial size multiple it accepts and how much context (halo) each tile needs.
Zoo models declare them; for a plain ``torch.nn.Module`` they are found by cheap probes: small
forward calls for the size multiple, and an input-gradient probe for the effective receptive field.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ..errors import InputError, ModelError
from ..modelcard import CARD_LIMITS, module_mode
from ..models import registry
from ..models.context import unwrapped
from .feeding import in_passing_thread

MODES = ("spatial", "pointwise", "volume")


@dataclass
class EngineSpec:
    mode: str
    in_channels: int
    out_channels: int
    size_multiple: int
    halo: int
    takes_mask: bool
    fills_gaps: bool
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    normalization: dict = field(default_factory=lambda: {"kind": "none"})
    output_units: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)
    standard_names: dict = field(default_factory=dict)
    min_tile: int = 0  # the model's smallest efficient tile (its halo is large); raises the default
    cpu_bf16: bool = False  # precision="auto" may use bf16 autocast on a CPU with native bf16
    cpu_threads: int | None = None  # the model's CPU threads per call when the user sets none
    # The first target_channels input channels are the ones to fill (the rest only inform the
    # fill: context fields); None = every channel. Only gaps there make a tile run (TILES_GAPS).
    target_channels: int | None = None
    # The model takes a mask of -1 where a gap lies outside the domain (the caller discards the
    # output there; the model may skip it): the caller marks those input pixels +inf.
    takes_domain: bool = False

    @property
    def single_threaded(self) -> bool:
        """The model declares one CPU thread a call (many small ops): its calls run in the callers' threads."""
        return self.cpu_threads == 1

    @property
    def n_spatial(self) -> int:
        return {"spatial": 2, "volume": 3, "pointwise": 0}[self.mode]


def _first_layer(module: torch.nn.Module):
    for layer in module.modules():
        if isinstance(layer, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d,
                              torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)):
            return layer
    return None


def guess_mode(module: torch.nn.Module) -> str:
    layer = _first_layer(module)
    if isinstance(layer, torch.nn.Linear):
        return "pointwise"
    if isinstance(layer, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)):
        return "volume"
    return "spatial"


def guess_in_channels(module: torch.nn.Module) -> int | None:
    layer = _first_layer(module)
    if layer is None:
        return None
    return getattr(layer, "in_channels", None) or getattr(layer, "in_features", None)


class _ProbeFailed(Exception):
    """The model raised on a probe input (which a size probe may expect for some sizes)."""


def _label(module) -> str:
    return type(module).__name__


def _call(module, x, takes_mask):
    """One probe call; the output must be a real tensor (a :class:`ModelError` otherwise)."""
    try:
        out = module(x, torch.ones_like(x)) if takes_mask else module(x)
    except Exception as error:  # noqa: BLE001 - the caller decides (size probing tries other sizes)
        raise _ProbeFailed(error) from error
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.is_complex() or out.dtype == torch.bool:
        # A bool tensor (x > 280) failed later in torch's abs(), as a raw NotImplementedError (probe).
        what = type(out).__name__ if not isinstance(out, torch.Tensor) else f"a {out.dtype} tensor"
        raise ModelError(f"model {_label(module)!r} returned {what} for an input of shape {tuple(x.shape)}; "
                         "its forward must return a real (float or integer) torch.Tensor (batch, channels, *spatial), "
                         "or a tuple whose first item is one.")
    return out


def _raised(module, error: BaseException, shape) -> ModelError:
    cause = error.__cause__ if isinstance(error, _ProbeFailed) and error.__cause__ is not None else error
    return ModelError(f"model {_label(module)!r} raised {type(cause).__name__} on a probe input of shape "
                      f"{tuple(shape)}: {str(cause)[:300]}")


@contextmanager
def _evaluating(module):
    """``module`` in eval mode for the block (probes must not update batch-norm statistics)."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _checked_call(module, x, takes_mask):
    """One probe call; the model's own error comes back as :class:`ModelError` naming the input shape."""
    try:
        return _call(module, x, takes_mask)
    except _ProbeFailed as error:
        raise _raised(module, error, x.shape) from error.__cause__


def probe_size_multiple(module, in_channels: int, n_spatial: int, takes_mask: bool) -> int:
    """Smallest power of two ``m`` such that a size-``3m`` input comes back the same size."""
    last_error, raised = None, set()
    for m in (1, 2, 4, 8, 16, 32, 64, 128):
        side = 3 * m
        x = torch.zeros((1, in_channels) + (side,) * n_spatial)
        try:
            with torch.inference_mode():
                out = _call(module, x, takes_mask)
        except _ProbeFailed as error:  # a failed size is what we are probing for
            last_error = error.__cause__ or error
            raised.add((type(last_error).__name__, str(last_error)))
            continue
        if tuple(out.shape[2:]) == (side,) * n_spatial:
            return m
        last_error = ValueError(f"output spatial shape {tuple(out.shape[2:])} for input {(side,) * n_spatial}")
        raised.add(None)
    if len(raised) == 1 and None not in raised:
        # The same error at every size is the model's own, not a size it cannot take: say it first
        # (it was the tail of "does not return outputs of its input's spatial size"; probe).
        raise ModelError(f"model {_label(module)!r} raised {type(last_error).__name__} whenever xdl called it "
                         f"(inputs of shape (1, {in_channels}) + spatial sizes 3 to 384): {str(last_error)[:300]}. "
                         "Check its forward with such an input.") from last_error
    raise ModelError(
        f"model {_label(module)!r} does not return outputs of its input's spatial size for any size multiple "
        f"up to 128 (last error: {type(last_error).__name__}: {str(last_error)[:300]}). xdl needs same-size "
        "spatial outputs; wrap the model or give it padding."
    ) from last_error


def probe_halo(module, in_channels: int, n_spatial: int, size_multiple: int, takes_mask: bool,
               share: float = 0.99) -> int:
    """Radius around an output pixel holding ``share`` of the input-gradient mass (the effective
    receptive field), rounded up to the size multiple. Probed on a random input in eval mode."""
    side = max(64, 8 * size_multiple)
    side = min(side, 256 if n_spatial == 2 else 48)
    side = max(side // size_multiple, 1) * size_multiple
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((1, in_channels) + (side,) * n_spatial, generator=generator).requires_grad_(True)
    with _evaluating(module), torch.enable_grad():
        out = _checked_call(module, x, takes_mask)
        if out.ndim != n_spatial + 2 or tuple(out.shape[2:]) != (side,) * n_spatial:
            raise ModelError(f"model {_label(module)!r} returned shape {tuple(out.shape)} for an input of "
                             f"shape {tuple(x.shape)}; xdl needs (batch, channels) plus the input's spatial size.")
        centre = (slice(None), slice(None)) + (side // 2,) * n_spatial
        if out.requires_grad:
            out[centre].sum().backward()
    if x.grad is None:  # no gradient: a constant output, or a model run under no_grad / detach()
        return _probe_halo_by_change(module, x.detach(), out.detach(), side, n_spatial, size_multiple, takes_mask)
    grad = x.grad.detach().abs().sum(dim=(0, 1))
    total = float(grad.sum())
    if total == 0.0:
        return 0
    dist = _distance_from_centre(side, n_spatial)  # the share within radius r
    for radius in range(side // 2 + 1):
        if float(grad[dist <= radius].sum()) >= share * total:
            break
    multiple = max(size_multiple, 1)
    return int(math.ceil(radius / multiple) * multiple)


def _distance_from_centre(side: int, n_spatial: int) -> torch.Tensor:
    """Chebyshev distance of each pixel of a ``side``-wide probe input from its centre pixel."""
    coords = torch.meshgrid(*[torch.arange(side) - side // 2] * n_spatial, indexing="ij")
    return torch.stack([c.abs() for c in coords]).amax(dim=0)


def _probe_halo_by_change(module, x, out, side, n_spatial, size_multiple, takes_mask) -> int:
    """The halo of a model that gives no gradient: the smallest radius (a bisection) beyond which
    new input values leave the centre output as it was; 0 for a constant output. A model wrapped
    in ``torch.no_grad()`` once got halo 0 from the gradient probe: missing inputs next to valid
    pixels reached it unmarked and tiles disagreed at their seams."""
    generator = torch.Generator().manual_seed(1)
    other = torch.randn(x.shape, generator=generator)
    centre = (slice(None), slice(None)) + (side // 2,) * n_spatial
    dist = _distance_from_centre(side, n_spatial)
    reference = out[centre]
    tolerance = 1e-6 * (1.0 + float(reference.abs().max()))

    def unchanged_beyond(radius):
        changed = torch.where(dist <= radius, x, other)
        with _evaluating(module), torch.inference_mode():
            moved = _checked_call(module, changed, takes_mask)[centre]
        return bool((moved - reference).abs().max() <= tolerance)

    if unchanged_beyond(-1):  # every input replaced: the output does not depend on it
        return 0
    low, high = -1, side // 2  # beyond `high` nothing is read (the whole probe: assume so)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if unchanged_beyond(mid) else (mid, high)
    multiple = max(size_multiple, 1)
    return int(math.ceil(high / multiple) * multiple)


def engine_spec(model, mode: str | None = None, halo: int | None = None) -> EngineSpec:
    """The engine's view of an ``xdl.Model`` (card) or a plain ``torch.nn.Module`` (attributes
    or probes)."""
    card = dict(getattr(model, "card", None) or {})
    module = getattr(model, "module", model)
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"model must be an xdl.Model, a torch.nn.Module, a zoo name or a path; got {type(model).__name__}.")

    def pick(key, default=None):
        if card.get(key) is not None:
            return card[key]
        value = getattr(module, key, None)
        return default if value is None else value

    def probed():
        was_training = module.training
        module.eval()  # probes must not touch BatchNorm running statistics
        try:
            return _engine_spec(card, module, pick, mode, halo)
        finally:
            module.train(was_training)

    return in_passing_thread(probed)  # its OpenMP team ends with it (see feeding.in_passing_thread)


def _engine_spec(card, module, pick, mode, halo_override) -> EngineSpec:
    mode = mode or card.get("mode") or module_mode(module) or guess_mode(module)
    if mode not in MODES:
        raise InputError(f"mode={mode!r}: use one of {MODES}.")
    takes_mask = bool(pick("takes_mask", False))
    in_channels = pick("in_channels") or guess_in_channels(module)
    if in_channels is None:
        raise InputError("cannot tell the model's number of input channels; give the module an "
                         "`in_channels` attribute or wrap it in xdl.Model with a card.")
    n_spatial = {"spatial": 2, "volume": 3, "pointwise": 0}[mode]
    if mode == "pointwise":
        size_multiple, halo = 1, 0
    else:
        size_multiple = pick("size_multiple") or probe_size_multiple(module, in_channels, n_spatial, takes_mask)
        halo = halo_override if halo_override is not None else pick("halo")
        if halo is None:
            halo = probe_halo(module, in_channels, n_spatial, size_multiple, takes_mask)
    out_channels = pick("out_channels")
    if out_channels is None or registry.name_of(unwrapped(module)) is None:  # a zoo model's card is checked
        # A user's module is called once on a small input now, so a wrong output (type, shape,
        # channels) or a model that raises is reported before any graph is built or data written.
        shape = _probe_output_shape(module, in_channels, mode, size_multiple, takes_mask)
        if out_channels is None:
            out_channels = shape[1]
        elif int(out_channels) != shape[1]:
            raise ModelError(f"model {_label(module)!r} declares out_channels={out_channels} but returns "
                             f"{shape[1]} channel(s) (output shape {shape}); fix its card or attribute.")
    return EngineSpec(
        mode=mode, in_channels=int(in_channels), out_channels=int(out_channels),
        size_multiple=int(size_multiple), halo=int(halo), takes_mask=takes_mask,
        fills_gaps=bool(pick("fills_gaps", False)),
        inputs=list(card.get("inputs") or []), outputs=list(card.get("outputs") or []),
        normalization=dict(card.get("normalization") or {"kind": "none"}),
        output_units=dict(card.get("output_units") or {}), units=dict(card.get("units") or {}),
        standard_names=dict(card.get("standard_names") or {}),
        min_tile=int(pick("min_tile", 0) or 0),
        cpu_bf16=bool(pick("cpu_bf16", False)),
        cpu_threads=_cpu_threads(pick("cpu_threads"), module),
        target_channels=_target_channels(pick("target_channels"), int(in_channels), module),
        takes_domain=takes_mask and bool(pick("takes_domain", False)),
    )


def _cpu_threads(value, module) -> int | None:
    """The card's or module's ``cpu_threads``, checked: a whole number from 1, or absent."""
    if value is None:
        return None
    lo, hi = CARD_LIMITS["cpu_threads"]
    try:  # the card's rule (a whole number, 32.0 too: the card passed it and the engine refused it; probe)
        return registry.check_int("cpu_threads", value, lo, hi)
    except ValueError:
        raise ModelError(f"model {_label(module)!r} declares cpu_threads={value!r}; it must be a whole number "
                         f"from {lo} to {hi} (CPU threads per model call), or absent. Fix its card or attribute.") from None


def _target_channels(value, in_channels: int, module) -> int | None:
    """The card's or module's ``target_channels``, checked: a whole number from 1 to ``in_channels``."""
    if value is None:
        return None
    whole = isinstance(value, int) and not isinstance(value, bool)
    if not whole or not 1 <= value <= in_channels:
        raise ModelError(f"model {_label(module)!r} declares target_channels={value!r}; it must be a whole "
                         f"number from 1 to in_channels={in_channels} (the channels to fill come first), "
                         "or absent when every channel is a target. Fix its card or attribute.")
    return int(value)


PROBE_VALUES = 2 ** 26  # the largest input (values) of the one call that checks a user's module


def _probe_output_shape(module, in_channels, mode, size_multiple, takes_mask) -> tuple:
    """The output shape of one small call (zeros), with the model's errors as :class:`ModelError`."""
    if mode == "pointwise":
        x = torch.zeros((2, in_channels))
    else:
        # Three multiples (one leaves a deep model a 1-pixel bottleneck its padding refuses), but
        # not past PROBE_VALUES: a card's size_multiple 4096 made a 12288-pixel-square call of 8 s
        # before any check of the data could refuse it (review).
        side = 3 * size_multiple
        shape = (1, in_channels) + (side,) * (3 if mode == "volume" else 2)
        if math.prod(shape) > PROBE_VALUES:
            raise InputError(f"model {_label(module)!r}: its size multiple {size_multiple} asks for calls on inputs of "
                             f"{' x '.join(map(str, shape[2:]))} values and more; check its card's size_multiple.")
        x = torch.zeros(shape)
    with _evaluating(module), torch.inference_mode():
        out = _checked_call(module, x, takes_mask)
    expected_rank = x.ndim
    if out.ndim != expected_rank or out.shape[0] != x.shape[0] or tuple(out.shape[2:]) != tuple(x.shape[2:]):
        raise ModelError(f"model {_label(module)!r} returned shape {tuple(out.shape)} for an input of shape "
                         f"{tuple(x.shape)}; xdl needs (batch, channels{', *spatial' if x.ndim > 2 else ''}) with the "
                         "input's batch and spatial sizes. Fix the model's padding or wrap it.")
    return tuple(out.shape)
