"""Models bundled with the package (``xdl/weights/*.safetensors``), loaded by name."""

from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).parent.parent / "weights"  # package data of xdl itself
DEFAULT_INPAINT = "fill-default"
# With context fields, neighbouring time steps or a sigma asked for: the bundled context model
# (a regression on the context with its residual kriged into the gaps, and the kriging standard
# error; alone it is a harmonic fill, worse than fill-default's learned one, which stays the
# default of a plain inpaint).
DEFAULT_CONTEXT = "fill-context"


def default_for(context=None, time_window=0, uncertainty=False) -> str:
    """The bundled default for a request: :data:`DEFAULT_CONTEXT` when it asks for context, a
    time window or a sigma (and that model is installed), else :data:`DEFAULT_INPAINT`.

    >>> default_for(), default_for(context=["C16"]), default_for(uncertainty=True)
    ('fill-default', 'fill-context', 'fill-context')
    """
    wants = bool(context) or bool(time_window) or bool(uncertainty)
    return DEFAULT_CONTEXT if wants and DEFAULT_CONTEXT in names() else DEFAULT_INPAINT


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
