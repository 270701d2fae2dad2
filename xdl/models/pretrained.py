"""Models bundled with the package (``xdl/weights/*.safetensors``), loaded by name."""

from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).parent.parent / "weights"  # package data of xdl itself
DEFAULT_INPAINT = "fill-default"


def names() -> list[str]:
    """Names of the bundled models, e.g. ``["fill-default"]``."""
    if not WEIGHTS.is_dir():
        return []
    return sorted(p.name[: -len(".safetensors")] for p in WEIGHTS.glob("*.safetensors"))


def path(name: str) -> Path:
    return WEIGHTS / f"{name}.safetensors"


def load(name: str = DEFAULT_INPAINT):
    """Load a bundled model by name (safetensors + JSON card, no pickle)."""
    from ..errors import UnknownModelError
    from ..modelfile import load_model

    if name not in names():
        raise UnknownModelError(f"no bundled model named {name!r}; bundled: {names() or 'none'}.")
    return load_model(path(name))
