"""The installed version of xdl, read once from the package metadata (pyproject.toml is the only
place it is written); modules that stamp outputs import it from here, not from the package root."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("xdl")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
