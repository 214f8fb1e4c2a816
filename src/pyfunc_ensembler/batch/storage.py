"""File datasets and sinks: local paths, ``gs://`` and ``s3://``, in pyarrow file systems.

- ``gs://bucket/path``: `pyarrow.fs.GcsFileSystem` with Google's default credentials;
  ``STORAGE_EMULATOR_HOST`` (``http://host:port``, read as Google's own storage client
  reads it) points it at an emulator or a private endpoint, anonymously.
- ``s3://bucket/path``: `pyarrow.fs.S3FileSystem` with AWS's usual credential chain;
  ``AWS_ENDPOINT_URL_S3`` or else ``AWS_ENDPOINT_URL`` (as boto3 reads them) set the
  endpoint (MinIO, moto, a private endpoint), ``AWS_REGION`` or ``AWS_DEFAULT_REGION``
  the region.
- anything else is a local path (``file://`` is stripped).

Output is staged under a hidden name beside the sink and put in place at the end
(`replace`, `add`), as cheaply and safely as each store allows:

- a local disk renames: a file over a file with one ``rename`` (atomic); a directory
  over anything by exchanging the two names atomically (Linux's ``renameat2`` with
  ``RENAME_EXCHANGE``), else by renaming the old aside, the new in, and the old back
  should that fail; the old is deleted after. Appended part files are renamed in.
- object stores have no rename, and no directories: each staged object is copied to
  its final name *inside the store* (S3 ``CopyObject``, GCS ``rewrite``: nothing is
  downloaded or uploaded again), all of them before anything is deleted; if a copy
  fails, the copies made are deleted and the sink is as it was. Only then are the old
  objects of a replaced sink deleted, and the staged ones. A copy over an existing
  object replaces it atomically, so a single-file sink is never missing; a replaced
  directory briefly holds old and new part files together, never neither. S3 copies
  at most 5 GB in one ``CopyObject``: directory sinks keep their part files under
  that (`io.PART_BYTES`); a larger single file cannot be put in place there (the job
  fails, the sink as it was).

Both engines stage through `Placement`: the local engine writes the staged output
itself, the Spark engine has Spark write it (a directory of part files), and either
puts it in place with `Placement.commit`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from pyfunc_ensembler.batch.job import SaveMode
from pyfunc_ensembler.errors import BatchError

SCHEMES = ("gs", "s3")
logger = logging.getLogger("pyfunc_ensembler.batch")


def is_remote(location: str) -> bool:
    return urlsplit(location).scheme in SCHEMES


def can_stage(location: str) -> bool:
    """Whether `location` is on a file system this module knows (local, gs://, s3://)."""
    scheme = urlsplit(location).scheme
    return scheme in (*SCHEMES, "file") or "://" not in location


def locate(location: str) -> tuple[pafs.FileSystem, str]:
    """The file system holding `location`, and the path within it."""
    parts = urlsplit(location)
    if parts.scheme == "gs":
        return _gcs(), f"{parts.netloc}{parts.path}".rstrip("/")
    if parts.scheme == "s3":
        return _s3(), f"{parts.netloc}{parts.path}".rstrip("/")
    if not can_stage(location):
        raise BatchError(
            f"cannot read or write '{location}': the local engine knows local paths, "
            f"gs:// and s3:// (--engine spark reads what Spark reads)"
        )
    path = location.removeprefix("file://")
    return pafs.LocalFileSystem(), os.path.abspath(path) if path else path


def _gcs() -> pafs.FileSystem:
    endpoint = os.environ.get("STORAGE_EMULATOR_HOST")
    if not endpoint:
        return pafs.GcsFileSystem()
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    return pafs.GcsFileSystem(
        anonymous=True, endpoint_override=parts.netloc, scheme=parts.scheme or "http"
    )


def _s3() -> pafs.FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return pafs.S3FileSystem(endpoint_override=endpoint or None, region=region or None)


class Placement:
    """A sink's output staged under a hidden name beside it, put in place at the end.

    Made before the job reads anything, so that a sink its save mode forbids fails the
    job at once: an existing sink under ``errorifexists``, an append to a single file.
    `skip`: the sink exists and the save mode is ``ignore``: there is nothing to do.
    """

    def __init__(self, location: str, save_mode: SaveMode, single_file: bool) -> None:
        self.location, self.save_mode = location, save_mode
        self.fs, self.path = locate(location)
        exists = holds_data(self.fs, self.path)
        if exists and save_mode is SaveMode.ERRORIFEXISTS:
            raise BatchError(
                f"'{location}' exists: choose save_mode overwrite, append or ignore "
                f"(--save-mode), or another path"
            )
        if exists and single_file and save_mode is SaveMode.APPEND:
            raise BatchError(
                f"cannot append to the single file '{location}': give a directory path"
            )
        self.skip = exists and save_mode is SaveMode.IGNORE
        self.parent, _, name = self.path.rpartition("/")
        self.staging = f"{self.parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        """Where the output is written, in `fs`."""

    @property
    def staging_uri(self) -> str:
        """`staging` as a URI of the sink's own scheme (for Spark)."""
        scheme = urlsplit(self.location).scheme
        return f"{scheme}://{self.staging}" if scheme in SCHEMES else self.staging

    def commit(self) -> None:
        """Put the staged output in place: replacing the sink, or adding to it under append."""
        try:
            if (
                self.save_mode is SaveMode.APPEND
                and kind(self.fs, self.path) is pafs.FileType.Directory
            ):
                add(self.fs, self.staging, self.path)
            else:
                replace(self.fs, self.staging, self.path)
        except OSError as exc:
            raise BatchError(
                f"cannot put the output in place at '{self.location}' (it is as it was): {exc}"
            ) from exc

    def abort(self) -> None:
        """Remove what was staged: a failed job leaves the sink as it was."""
        remove_tree(self.fs, self.staging)


def kind(fs: pafs.FileSystem, path: str) -> pafs.FileType:
    return fs.get_file_info(path).type


def files_under(fs: pafs.FileSystem, path: str) -> list[str]:
    """The files below the directory `path`, sorted; ``[]`` when there is none."""
    if kind(fs, path) is not pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return sorted(i.path for i in infos if i.type is pafs.FileType.File)


def holds_data(fs: pafs.FileSystem, path: str) -> bool:
    """A file, or a directory with a visible file (Spark's ``_SUCCESS`` and dot files aside)."""
    found = kind(fs, path)
    if found is pafs.FileType.File:
        return True
    return any(not hidden(f[len(path) :]) for f in files_under(fs, path))


def hidden(relative: str) -> bool:
    """Whether readers skip this path below a dataset's directory (``_SUCCESS``, ``.x``)."""
    return any(part.startswith(("_", ".")) for part in relative.split("/") if part)


def remove_tree(fs: pafs.FileSystem, path: str) -> None:
    """Remove the file or directory `path`, if there is one (file by file on object stores)."""
    found = kind(fs, path)
    if found is pafs.FileType.File:
        fs.delete_file(path)
    elif found is pafs.FileType.Directory:
        if isinstance(fs, pafs.LocalFileSystem):
            fs.delete_dir(path)
            return
        for file in files_under(fs, path):
            fs.delete_file(file)
        if kind(fs, path) is pafs.FileType.Directory:  # a directory marker object
            fs.delete_dir(path)


def replace(fs: pafs.FileSystem, staged: str, target: str) -> None:
    """Put the file or directory `staged` at `target`, in place of whatever is there."""
    parent = target.rpartition("/")[0]
    if parent:
        fs.create_dir(parent, recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        _replace_locally(staged, target)
        return
    old = _objects(fs, target)
    if kind(fs, staged) is pafs.FileType.File:
        pairs = [(staged, target)]
    else:
        pairs = [(f, target + f[len(staged) :]) for f in files_under(fs, staged)]
    _copy(fs, pairs, set(old))
    new = {copy for _, copy in pairs}
    try:
        for file in old:
            if file not in new:
                fs.delete_file(file)
    except OSError as exc:
        raise BatchError(
            f"the new output is in place at '{target}', but some of the old could not be "
            f"removed, so both are there: {exc}"
        ) from exc
    _discard(fs, staged)


def add(fs: pafs.FileSystem, staged: str, target: str) -> None:
    """Put the files of the directory `staged` into the directory `target`, beside its own."""
    pairs = [(f, target + f[len(staged) :]) for f in files_under(fs, staged)]
    if isinstance(fs, pafs.LocalFileSystem):
        _rename_all(pairs)
    else:
        _copy(fs, pairs, set(files_under(fs, target)))
    _discard(fs, staged)


def _objects(fs: pafs.FileSystem, path: str) -> list[str]:
    """The object `path` and the objects under ``path/``: what a sink there consists of."""
    found = [path] if kind(fs, path) is pafs.FileType.File else []
    return found + files_under(fs, path)


def _copy(fs: pafs.FileSystem, pairs: Sequence[tuple[str, str]], existing: set[str]) -> None:
    """Copy each ``(source, target)`` inside the store; on a failure, delete the new copies.

    `existing`: the targets there before, which a failure must not delete.
    """
    done: list[str] = []
    try:
        for source, target in pairs:
            fs.copy_file(source, target)  # S3 CopyObject, GCS rewrite: server side
            done.append(target)
    except BaseException:
        for target in done:
            if target not in existing:
                with contextlib.suppress(OSError):
                    fs.delete_file(target)
        raise


def _rename_all(pairs: Sequence[tuple[str, str]]) -> None:
    """Rename each ``(source, target)``; on a failure, rename the moved ones back."""
    done: list[tuple[str, str]] = []
    try:
        for source, target in pairs:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.rename(source, target)
            done.append((source, target))
    except BaseException:
        for source, target in reversed(done):
            with contextlib.suppress(OSError):
                os.rename(target, source)
        raise


def _replace_locally(staged: str, target: str) -> None:
    if not os.path.lexists(target):
        os.rename(staged, target)
        return
    if not os.path.isdir(staged) and not os.path.isdir(target):
        os.replace(staged, target)  # atomic
        return
    try:
        exchange(staged, target)  # atomic: `staged` now names the old output
    except OSError:
        parent, _, name = target.rpartition("/")
        aside = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.old"  # hidden, as the staging is
        os.rename(target, aside)
        try:
            os.rename(staged, target)
        except BaseException:
            os.rename(aside, target)
            raise
        staged = aside
    _discard(pafs.LocalFileSystem(), staged)


def _renameat2() -> Callable[..., int] | None:
    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not Linux, or a C library without it
        return None
    return function


_RENAMEAT2 = _renameat2()
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(first: str, second: str) -> None:
    """Swap what the paths `first` and `second` name, atomically (Linux ``renameat2``).

    Raises `OSError` where it cannot (another system, a file system without it).
    """
    if _RENAMEAT2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    paths = (os.fsencode(first), os.fsencode(second))
    if _RENAMEAT2(_AT_FDCWD, paths[0], _AT_FDCWD, paths[1], _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), first)


def _discard(fs: pafs.FileSystem, path: str) -> None:
    """Remove what is left at `path` once the output is in place; a failure only warns."""
    try:
        remove_tree(fs, path)
    except OSError as exc:
        logger.warning("the output is in place, but %s could not be removed: %s", path, exc)
