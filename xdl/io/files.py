"""Paths and files shared by readers and writers: atomic replacement, removal, the overwrite and
input-overlap checks. Only the standard library: model files and the CLI use it without xarray.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError, OutputExistsError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["GLOB_CHARS", "input_paths", "is_zarr", "refuse_existing", "refuse_overlap", "remove_path",
           "replace_atomically"]

GLOB_CHARS = frozenset("*?[")
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zattrs", ".zmetadata")


def is_zarr(path) -> bool:
    """True for a ``*.zarr`` name or a directory holding zarr metadata."""
    p = os.fspath(path).rstrip("/")
    return p.endswith(".zarr") or (os.path.isdir(p) and any(
        os.path.exists(os.path.join(p, f)) for f in _ZARR_MARKERS))


def input_paths(path) -> list[str]:
    """The files or stores an input argument names: a glob expanded, each as a real path.

    >>> input_paths(None)
    []
    """
    if path is None:
        return []
    path = os.fspath(path)
    if GLOB_CHARS & set(path) and not os.path.exists(path):
        return [os.path.realpath(p) for p in sorted(glob.glob(path))]
    return [os.path.realpath(path)]


def remove_path(path) -> None:
    """Remove a file, link or directory tree at ``path``; nothing when there is none."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


@contextmanager
def replace_atomically(path, *, clear: bool = False):
    """Yield a temporary sibling of ``path`` (``.NAME.tmp-HOST-PID``) to write; when the block ends
    without an error it is renamed onto ``path``, so a crash never leaves a half-written file.
    The temporary is removed in every case; one a killed run of this host left (SIGKILL, power
    loss: nothing of it could clean up) is removed by the next write of ``path``. ``clear=True``
    first removes what is at ``path`` (a rename cannot replace a directory), for callers that
    already agreed to overwrite it.

    >>> import tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> with replace_atomically(target) as tmp:
    ...     _ = Path(tmp).write_text("done")
    >>> Path(target).read_text(), os.listdir(os.path.dirname(target))
    ('done', ['a.txt'])
    """
    target = Path(os.fspath(path).rstrip("/") or os.fspath(path))
    stem = f".{_short_name(target, f'.tmp-{_HOST}-{os.getpid()}')}.tmp-{_HOST}-"
    tmp = target.with_name(f"{stem}{os.getpid()}")
    _remove_dead_runs_temporaries(target.parent, stem)
    remove_path(tmp)
    try:
        yield os.fspath(tmp)
        if clear and os.path.lexists(target):
            remove_path(target)
        os.replace(tmp, target)
    finally:
        remove_path(tmp)


MAX_NAME = 255  # bytes in a file name on the common file systems (a 250-character OUT failed as "Permission denied")
_HOST = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname()) or "host"


def readable_like_a_new_file(path) -> None:
    """Give ``path`` the permissions of any new file (0666 less the umask): safetensors writes
    owner-only files (0600), which a cluster's workers or other users could not read."""
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    """The process's umask: from /proc where Linux has it (setting it to read it, as elsewhere,
    changes it for every thread for a moment)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _short_name(target: Path, suffix: str) -> str:
    """``target``'s name for a hidden sibling ``.NAME<suffix>``: its digest where that would be too long."""
    if len(f".{target.name}{suffix}".encode()) > MAX_NAME:
        return hashlib.sha256(target.name.encode()).hexdigest()[:16]
    return target.name


@contextmanager
def writer_lock(path):
    """Hold an exclusive ``flock`` on ``.NAME.xdl-writer`` beside ``path`` (the real path, not a
    link to it) while writing it: a second writer of the same OUT is refused, where two at once
    (two --overwrite runs) removed each other's store and both failed, the output lost (probe). The
    operating system releases the lock when its process ends, killed or not, so a dead run's lock
    never blocks (a pid written in the file, tried first, was fooled by a reused pid and raced on
    taking over; review probe); the file names the holder for the message only."""
    target = Path(os.path.realpath(os.fspath(path).rstrip("/") or os.fspath(path)))
    lock = target.with_name(f".{_short_name(target, '.xdl-writer')}.xdl-writer")
    if fcntl is None:  # no flock (Windows): unlocked, as before
        yield
        return
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputExistsError(f"{target}: another xdl process ({holder}) is writing it; let it finish, or "
                                    "choose another path.") from None
        try:  # the file released and removed by its holder between our open and our lock: again
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        try:  # who holds it, for another writer's message (a full disk must not stop the write)
            os.ftruncate(fd, 0)
            os.write(fd, f"host {_HOST}, pid {os.getpid()}".encode())
        except OSError:
            pass
        yield
    finally:
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)


def _remove_dead_runs_temporaries(folder: Path, stem: str) -> None:
    """Remove ``folder/STEM<pid>`` left by runs of this host whose process is gone (another host's,
    on a shared file system, is never touched: its PIDs mean nothing here)."""
    try:
        names = [n for n in os.listdir(folder or ".") if n.startswith(stem)]
    except OSError:
        return
    for name in names:
        pid = name[len(stem):]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            remove_path(folder / name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's, or unknowable: leave it
    return True


def refuse_existing(path, fix: str = "pass --overwrite to replace it, or choose another path") -> None:
    """The overwrite check: :class:`OutputExistsError` when something exists at ``path``, with
    ``fix`` saying how to proceed."""
    if os.path.lexists(path):
        raise OutputExistsError(f"{os.fspath(path)}: already exists; {fix}.")


def _overlaps(a: str, b: str) -> bool:
    """True when real paths ``a`` and ``b`` are the same or one lies inside the other."""
    return a == b or a.startswith(b.rstrip(os.sep) + os.sep) or b.startswith(a.rstrip(os.sep) + os.sep)


def refuse_overlap(path, inputs, fix: str = "Write to a path outside every input.") -> None:
    """Refuse an output that is, contains or lies inside any of ``inputs`` (paths or globs; None
    entries are skipped): writing it would destroy data being read. ``fix`` says how to proceed."""
    path = os.fspath(path)
    real = os.path.realpath(path.rstrip("/") or path)
    for given in inputs:
        for source in input_paths(given):
            if _overlaps(real, source):
                how = ("is" if real == source else "contains" if source.startswith(real + os.sep)
                       else "lies inside")
                raise InputError(f"{path}: the output {how} an input ({source}); writing it would destroy "
                                 f"data being read. {fix}")
