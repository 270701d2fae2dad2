"""The exceptions xdl raises. All derive from :class:`XdlError`, so ``except xdl.XdlError`` catches them."""


class XdlError(Exception):
    """Base class of every error xdl raises on purpose."""


class InputError(XdlError, ValueError):
    """The data handed to xdl cannot be used as given (dtype, dims, coordinates, masks, sizes)."""


class ModelFileError(XdlError, ValueError):
    """A model file is missing, malformed, truncated, hostile (pickle) or does not match its card."""


class UnknownModelError(XdlError, KeyError):
    """A zoo name or architecture that xdl does not know."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OutputExistsError(XdlError, FileExistsError):
    """An output path already exists and overwriting was not asked for."""


class OutputWriteError(XdlError, OSError):
    """Writing an output failed (disk full, permissions, an HDF error); the message names the path
    and the cause."""


class ModelError(XdlError, RuntimeError):
    """A model misbehaved when called: it raised, or returned something other than a float tensor
    of the input's spatial size with the declared number of channels."""


class XdlWarning(UserWarning):
    """Something xdl did that a user should know about (values treated as gaps, a model's NaN)."""
