"""One writer per output: an exclusive lease on a MODEL_DIR or a predictions OUT_DIR.

A job that writes an output first creates ``.<name>.lease`` beside it (hidden, so that
no Parquet reader takes it for data, and outside the directory, which predict replaces
by a rename), *exclusively*: on a local disk or NFS written whole under a private name and
hard-linked into place (``link`` fails when the name exists, as ``O_EXCL`` does, and no
racer reads a half-written lease); on an
object store with a conditional PUT (``If-None-Match: *``, which AWS S3, MinIO and moto
honour; s3fs's ``mode="create"``). Exactly one of two jobs that race gets it; the other
exits 2 naming the holder. The lease names its holder (host, pid, start time, command)
and is renewed every ``RENEW_SECONDS`` while the job runs, so a lease is *stale* when its
process is gone (same host) or it has not been renewed for ``STALE_SECONDS`` (any host):
then it is taken over, with a warning. It is removed when the job ends, whatever the
outcome.

Limits: a filesystem or object store without exclusive create (some S3-compatible
stores ignore ``If-None-Match``) cannot give this guarantee; two jobs on such a store
may both think they hold the lease, and the later write of the model wins.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator

from fsspec.implementations.local import LocalFileSystem

from lrdask import storage
from lrdask.errors import OutputLockedError, StorageError

log = logging.getLogger("lrdask")

RENEW_SECONDS = 60.0
STALE_SECONDS = 600.0


def lease_location(out: str) -> str:
    """``…/.<name>.lease`` beside the output ``…/<name>``; a local output's symlinks are
    resolved first, so that two names for one directory share one lease."""
    base = out.rstrip("/")
    if "://" not in base or base.startswith("file://"):
        local = base.removeprefix("file://")
        base = os.path.realpath(local) if local else base
    parent, _, name = base.rpartition("/")
    return f"{parent}/.{name}.lease" if parent else f".{name}.lease"


@contextlib.contextmanager
def lease(out: str, command: str, storage_options: dict | None = None) -> Iterator[dict]:
    """Hold the lease on ``out`` for the duration of the block (see the module docstring).

    Raises ``OutputLockedError`` (exit 2) when another live job holds it, and
    ``StorageError`` when it cannot be written at all."""
    url = lease_location(out)
    mine = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": _now(),
        "renewed": _now(),
        "command": command,
        "token": uuid.uuid4().hex,
    }
    with storage.storage_errors("create the lease for", f"{out} ({url})"):
        _acquire(url, mine, out, storage_options)
    stop = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(url, mine, stop, storage_options), daemon=True, name="lrdask-lease"
    )
    renewer.start()
    try:
        yield mine
    finally:
        stop.set()
        renewer.join(5)
        _release(url, mine, storage_options)


def _acquire(url: str, mine: dict, out: str, storage_options) -> None:
    for _ in range(3):  # a holder that just left, or a stale lease taken over by a racer
        if _create(url, mine, storage_options):
            return
        holder = _read(url, storage_options)
        if holder is None:
            continue  # released between our create and our read: try again
        why = _stale(holder)
        if why is None:
            raise OutputLockedError(
                f"{out} is being written by another job ({_describe(holder)}); wait for it "
                f"to finish, or, if that job is gone, delete {url}"
            )
        log.warning("taking over the stale lease on %s (%s; %s)", out, _describe(holder), why)
        _remove_if(url, holder, storage_options)
    raise OutputLockedError(
        f"{out}: other jobs keep taking the lease {url}; run one job per output at a time"
    )


def _create(url: str, doc: dict, storage_options) -> bool:
    """Write the lease only if there is none; False if there is one. OS errors propagate
    (``lease`` turns them into one line)."""
    data = json.dumps(doc).encode()
    fs, path = storage.filesystem(url, storage_options)
    parent = path.rsplit("/", 1)[0] if "/" in path else "."
    fs.makedirs(parent, exist_ok=True)
    try:
        if isinstance(fs, LocalFileSystem):
            # written whole under a private name, then hard-linked into place: link() is
            # exclusive like O_EXCL, and no racer ever reads a lease half-written
            draft = f"{path}.{uuid.uuid4().hex[:8]}.draft"
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.link(draft, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(draft)
        else:
            fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    except OSError:
        if fs.exists(path):  # a conditional PUT refused (412) comes as another error
            return False
        raise
    return True


def _read(url: str, storage_options) -> dict | None:
    try:
        return json.loads(storage.read_bytes(url, storage_options))
    except FileNotFoundError:
        return None
    except ValueError:  # half-written by a job killed while creating it
        return {"host": "?", "pid": 0, "started": "?", "renewed": "", "command": "?"}


def _stale(holder: dict) -> str | None:
    """Why ``holder``'s lease is stale, or None while it is live."""
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
        return f"process {pid} is no longer running"
    try:
        renewed = datetime.datetime.fromisoformat(holder.get("renewed", ""))
    except (TypeError, ValueError):
        return "it is unreadable"
    age = (datetime.datetime.now(datetime.UTC) - renewed).total_seconds()
    if age > STALE_SECONDS:
        return f"not renewed for {age:.0f}s"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return pid > 0


def _renew(url: str, mine: dict, stop: threading.Event, storage_options) -> None:
    while not stop.wait(RENEW_SECONDS):
        try:
            holder = _read(url, storage_options)
            if holder is None or holder.get("token") != mine["token"]:
                log.error("lost the lease on %s: another job took it over", url)
                return
            mine["renewed"] = _now()
            storage.write_bytes_atomic(url, json.dumps(mine).encode(), storage_options)
        except (StorageError, OSError) as exc:  # retried next time; stale after STALE_SECONDS
            log.warning("could not renew the lease %s (%s); retrying", url, exc)


def _release(url: str, mine: dict, storage_options) -> None:
    holder = _read(url, storage_options)
    if holder is not None and holder.get("token") == mine["token"]:
        try:
            storage.remove(url, storage_options)
        except StorageError as exc:  # the job's own outcome is the news; say it anyway
            log.warning("could not remove the lease %s (%s); delete it by hand", url, exc)


def _remove_if(url: str, holder: dict, storage_options) -> None:
    """Remove the stale lease if it is still ``holder``'s. On a disk the lease is first
    renamed aside (atomic: of two racers one gets it) and put back with a hard link if it
    turns out to be a racer's fresh one; on an object store a short window remains in
    which two racers may both remove and one of them then wins the create."""
    fs, path = storage.filesystem(url, storage_options)
    if not isinstance(fs, LocalFileSystem):
        if _read(url, storage_options) == holder:
            storage.remove(url, storage_options)
        return
    aside = f"{path}.{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    with open(aside, "rb") as fh:
        taken = fh.read()
    with contextlib.suppress(ValueError):
        if json.loads(taken) != holder:
            with contextlib.suppress(FileExistsError):
                os.link(aside, path)  # a racer's fresh lease: put it back
    os.unlink(aside)


def _describe(holder: dict) -> str:
    return (
        f"host {holder.get('host')}, pid {holder.get('pid')}, started {holder.get('started')}, "
        f"lrdask {holder.get('command')}"
    )


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


__all__ = ["lease", "lease_location"]
