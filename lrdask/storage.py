"""Reading and writing small outputs on any fsspec filesystem, atomically.

A reader (a person, or the next step of a pipeline) must see either the previous
complete file or the new complete file, never half of one. Locally that is a temporary
file in the same directory, flushed to disk, then ``os.replace``; on object stores a
single PUT is already all-or-nothing. Files get the mode the process's umask gives
(``mkstemp`` alone would make them 0600: unreadable to the service that loads the model).

Every OS or storage error becomes one ``StorageError`` naming the location
(``storage_errors``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from lrdask.errors import EXIT_BAD_INPUT, EXIT_INFRA, StorageError

# no room: retry once there is (exit 3); not allowed: fix the location (exit 2)
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# (EEXIST/ENOTDIR: a file stands where a directory must go)
_NOT_ALLOWED = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST}


def storage_error(exc: OSError, action: str, url: str) -> StorageError:
    """The one-line error for an OS/storage failure while doing ``action`` on ``url``."""
    reason = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
    if exc.errno in _NO_ROOM:
        hint, code = "free space there (or raise the quota or file size limit) and rerun", None
    elif exc.errno in _NOT_ALLOWED:
        hint, code = "make it writable for this user, or choose another location", EXIT_BAD_INPUT
    else:
        hint, code = "check the storage and rerun", None
    return StorageError(f"cannot {action} {url}: {reason}; {hint}", code or EXIT_INFRA)


@contextlib.contextmanager
def storage_errors(action: str, url: str) -> Iterator[None]:
    """Turn an ``OSError`` raised inside into a ``StorageError`` (our own pass through)."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise storage_error(exc, action, url) from None


def umask() -> int:
    """The process's umask, read without changing it (``/proc``), else by setting it."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    current = os.umask(0o022)
    os.umask(current)
    return current


def filesystem(url: str, storage_options: dict | None = None):
    """(filesystem, path) for any fsspec URL or local path."""
    return fsspec.core.url_to_fs(url, **(storage_options or {}))


def join(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/"), *names])


def write_bytes_atomic(url: str, data: bytes, storage_options: dict | None = None) -> None:
    """Write ``data`` to ``url`` so that it appears complete or not at all.

    Raises ``StorageError`` (one line, naming ``url``) for any OS or storage failure."""
    with storage_errors("write", url):
        fs, path = filesystem(url, storage_options)
        parent = path.rsplit("/", 1)[0] if "/" in path else "."
        fs.makedirs(parent, exist_ok=True)
        if not isinstance(fs, LocalFileSystem):
            fs.pipe_file(path, data)
            return
        prefix = f".{os.path.basename(path)}."
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=parent)
        try:
            os.fchmod(fd, 0o666 & ~umask())
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def remove(url: str, storage_options: dict | None = None) -> None:
    """Delete the file at ``url`` if it is there; a concurrent delete is not an error."""
    with storage_errors("remove", url):
        fs, path = filesystem(url, storage_options)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(path)


def read_bytes(url: str, storage_options: dict | None = None) -> bytes:
    fs, path = filesystem(url, storage_options)
    return fs.cat_file(path)


def exists(url: str, storage_options: dict | None = None) -> bool:
    fs, path = filesystem(url, storage_options)
    return fs.exists(path)
