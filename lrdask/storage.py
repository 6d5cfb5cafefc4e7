"""Reading and writing small outputs on any fsspec filesystem, atomically.

A reader (a person, or the next step of a pipeline) must see either the previous
complete file or the new complete file, never half of one. Locally that is a temporary
file in the same directory, flushed to disk, then ``os.replace``; on object stores a
single PUT is already all-or-nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import fsspec
from fsspec.implementations.local import LocalFileSystem


def filesystem(url: str, storage_options: dict | None = None):
    """(filesystem, path) for any fsspec URL or local path."""
    return fsspec.core.url_to_fs(url, **(storage_options or {}))


def join(base: str, *names: str) -> str:
    return "/".join([base.rstrip("/"), *names])


def write_bytes_atomic(url: str, data: bytes, storage_options: dict | None = None) -> None:
    """Write ``data`` to ``url`` so that it appears complete or not at all."""
    fs, path = filesystem(url, storage_options)
    parent = path.rsplit("/", 1)[0] if "/" in path else "."
    fs.makedirs(parent, exist_ok=True)
    if not isinstance(fs, LocalFileSystem):
        fs.pipe_file(path, data)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_bytes(url: str, storage_options: dict | None = None) -> bytes:
    fs, path = filesystem(url, storage_options)
    return fs.cat_file(path)


def exists(url: str, storage_options: dict | None = None) -> bool:
    fs, path = filesystem(url, storage_options)
    return fs.exists(path)
