"""Models bundled with the package (``xdl/weights/*.safetensors``), loaded by name."""

from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).parent.parent / "weights"  # package data of xdl itself
# What inpaint, evaluate and the demo use when given no model, with or without context, a time
# window or a sigma: the kriged fill (a local regression on any context, its residual kriged into
# the gaps, the kriging standard error as sigma; alone, a kriged thin-plate or harmonic fill).
# Alone it replaced fill-default (harmonic fill + a learned UNet correction) in session 36: the
# learned correction added noise of about 2% of a field's standard deviation, which on smooth
# fields with strong gradients dwarfs the interpolation error (ERA-Interim z500, 10% isolated
# pixels: 49.7 against 1.8 without it, 23x linear interpolation). Over 17 real fields x 4 gap
# kinds the kriged fill scored 1.00 x the better of linear and biharmonic in the geometric mean
# (worst 1.54) against fill-default's 1.13 (worst 4.08) (benchmarks/RESULTS.md, 2026-12-07).
# fill-default stays bundled: the model to fine-tune (fit), whose UNet learns.
DEFAULT_INPAINT = "fill-context"
FINE_TUNABLE = "fill-default"


def default_for(context=None, time_window=0, uncertainty=False) -> str:
    """The bundled default for a request: :data:`DEFAULT_INPAINT` for every request since session
    36 (the arguments stay for callers that say what they ask for).

    >>> default_for(), default_for(context=["C16"]), default_for(uncertainty=True)
    ('fill-context', 'fill-context', 'fill-context')
    """
    return DEFAULT_INPAINT


def names() -> list[str]:
    """Names of the bundled models, e.g. ``["fill-default"]``."""
    if not WEIGHTS.is_dir():
        return []
    return sorted(p.name[: -len(".safetensors")] for p in WEIGHTS.glob("*.safetensors"))


def path(name: str) -> Path:
    return WEIGHTS / f"{name}.safetensors"


def describe() -> dict[str, str]:
    """``{name: first line of its card's description}`` for the bundled models, read from the
    file headers only (no weights are loaded); an unreadable file says why instead."""
    from ..errors import XdlError
    from ..modelformat import card_from_header, read_header

    out = {}
    for name in names():
        try:
            card = card_from_header(path(name), read_header(path(name))[0])
            desc = card.get("description") or card.get("architecture") or ""
        except XdlError as e:
            desc = f"(unreadable: {e})"
        out[name] = desc.splitlines()[0] if desc else ""
    return out


def load(name: str = DEFAULT_INPAINT):
    """Load a bundled model by name (safetensors + JSON card, no pickle)."""
    from ..errors import UnknownModelError
    from ..modelfile import load_model

    if name not in names():
        raise UnknownModelError(f"no bundled model named {name!r}; bundled: {names() or 'none'}.")
    return load_model(path(name))
