"""File datasets and sinks: local paths, ``gs://`` and ``s3://``, in pyarrow file systems.

- ``gs://bucket/path``: `pyarrow.fs.GcsFileSystem` with Google's default credentials;
  ``STORAGE_EMULATOR_HOST`` (``http://host:port``, read as Google's own storage client
  reads it) points it at an emulator or a private endpoint, anonymously.
- ``s3://bucket/path``: `pyarrow.fs.S3FileSystem` with AWS's usual credential chain;
  ``AWS_ENDPOINT_URL_S3`` or else ``AWS_ENDPOINT_URL`` (as boto3 reads them) set the
  endpoint (MinIO, moto, a private endpoint), ``AWS_REGION`` or ``AWS_DEFAULT_REGION``
  the region.
- anything else is a local path (``file://`` is stripped).

Object stores have no directories and no atomic rename: `move_tree` and `remove_tree`
work file by file, so "moved into place at the end" is a few copies on them, not one
rename (a crash in the middle of a commit can leave part of the output; a failed job
still leaves the sink as it was, since nothing is moved before the job succeeded).
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from pyfunc_ensembler.errors import BatchError

SCHEMES = ("gs", "s3")


def is_remote(location: str) -> bool:
    return urlsplit(location).scheme in SCHEMES


def locate(location: str) -> tuple[pafs.FileSystem, str]:
    """The file system holding `location`, and the path within it."""
    parts = urlsplit(location)
    if parts.scheme == "gs":
        return _gcs(), f"{parts.netloc}{parts.path}".rstrip("/")
    if parts.scheme == "s3":
        return _s3(), f"{parts.netloc}{parts.path}".rstrip("/")
    if "://" in location and parts.scheme != "file":
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
    return any(not _hidden(f[len(path) :]) for f in files_under(fs, path))


def _hidden(relative: str) -> bool:
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


def move_tree(fs: pafs.FileSystem, source: str, target: str) -> None:
    """Move the file or directory `source` to `target` (which must not exist)."""
    if isinstance(fs, pafs.LocalFileSystem) or kind(fs, source) is pafs.FileType.File:
        fs.move(source, target)
        return
    for file in files_under(fs, source):
        fs.move(file, target + file[len(source) :])
    remove_tree(fs, source)
