"""Putting output in place on a local disk: renames, an atomic exchange, and undoing."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from pyfunc_ensembler.batch import storage

LOCAL = pafs.LocalFileSystem()


def tree(path: Path) -> dict[str, str]:
    """Every file under `path` (or `path` itself), by relative name, with its text."""
    if path.is_file():
        return {".": path.read_text()}
    return {str(f.relative_to(path)): f.read_text() for f in sorted(path.rglob("*")) if f.is_file()}


def make(path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


def test_exchange_swaps_two_names_at_once(tmp_path: Path) -> None:
    directory = make(tmp_path / "a", {"x": "in a"})
    (tmp_path / "b").write_text("b")
    storage.exchange(str(directory), str(tmp_path / "b"))
    assert (tmp_path / "a").read_text() == "b"
    assert tree(tmp_path / "b") == {"x": "in a"}


def test_replace_puts_new_output_where_the_old_was(tmp_path: Path) -> None:
    old = make(tmp_path / "out", {"part-0": "old", "part-1": "old"})
    new = make(tmp_path / ".out.tmp", {"part-2": "new"})
    inode = new.stat().st_ino
    storage.replace(LOCAL, str(new), str(old))
    assert tree(old) == {"part-2": "new"}
    assert old.stat().st_ino == inode  # renamed in, not copied
    # A single file over a directory (Spark writes out.parquet/ as one), then over a file.
    make(tmp_path / "one.parquet", {"part-0": "spark's"})
    (tmp_path / ".one.tmp").write_text("ours")
    storage.replace(LOCAL, str(tmp_path / ".one.tmp"), str(tmp_path / "one.parquet"))
    assert tree(tmp_path / "one.parquet") == {".": "ours"}
    (tmp_path / ".one.tmp").write_text("again")
    storage.replace(LOCAL, str(tmp_path / ".one.tmp"), str(tmp_path / "one.parquet"))
    assert sorted(os.listdir(tmp_path)) == ["one.parquet", "out"]


def test_without_exchange_the_old_is_renamed_aside_and_back_on_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(first: str, second: str) -> None:
        raise OSError(22, "Invalid argument")  # what a file system without it answers

    monkeypatch.setattr(storage, "exchange", unsupported)
    old = make(tmp_path / "out", {"part-0": "old"})
    # The new output is gone (a failure between the two renames): the old comes back.
    with pytest.raises(FileNotFoundError):
        storage.replace(LOCAL, str(tmp_path / ".gone.tmp"), str(old))
    assert tree(old) == {"part-0": "old"}
    assert sorted(os.listdir(tmp_path)) == ["out"]
    new = make(tmp_path / ".out.tmp", {"part-1": "new"})
    storage.replace(LOCAL, str(new), str(old))
    assert tree(old) == {"part-1": "new"}
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_add_renames_parts_in_and_undoes_them_on_a_failure(tmp_path: Path) -> None:
    out = make(tmp_path / "out", {"part-0": "old", "part-b/blocker": "a directory"})
    staged = make(tmp_path / ".out.tmp", {"part-a": "new", "part-b": "new"})
    with pytest.raises(OSError):  # part-b cannot replace the directory of that name
        storage.add(LOCAL, str(staged), str(out))
    assert tree(out) == {"part-0": "old", "part-b/blocker": "a directory"}
    assert tree(staged) == {"part-a": "new", "part-b": "new"}
    (out / "part-b" / "blocker").unlink()
    (out / "part-b").rmdir()
    storage.add(LOCAL, str(staged), str(out))
    assert tree(out) == {"part-0": "old", "part-a": "new", "part-b": "new"}
    assert sorted(os.listdir(tmp_path)) == ["out"]
