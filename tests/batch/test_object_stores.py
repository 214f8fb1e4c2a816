"""gs:// and s3:// datasets and sinks, against real servers: gcp-storage-emulator and moto."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from pyfunc_ensembler.batch import run, short_job, storage
from pyfunc_ensembler.errors import BatchError, EnsembleFailed
from tests.batch.emulators import Emulator
from tests.batch.test_local import job


def put(uri: str, data: bytes) -> None:
    fs, path = storage.locate(uri)
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def read(uri: str) -> pa.Table:
    fs, path = storage.locate(uri)
    return ds.dataset(path, filesystem=fs).to_table()


def listing(uri: str) -> list[str]:
    fs, path = storage.locate(uri)
    return [f[len(path) + 1 :] for f in storage.files_under(fs, path)]


def test_read_join_and_write_in_a_bucket(bucket: str, pick_model: str, tmp_path: Path) -> None:
    rows = [{"id": i, "route": "a"} for i in range(6)]
    for part in range(2):  # a directory of part files, and Spark's marker beside them
        put(f"{bucket}/src/part-{part}.parquet", parquet_bytes(pa.Table.from_pylist(rows[part::2])))
    put(f"{bucket}/src/_SUCCESS", b"")
    keys = (5, 1, 3, 9, 0, 2, 4)
    lines = [orjson.dumps({"key": i, "data": i * 10, "is_default": False}) for i in keys]
    put(f"{bucket}/preds/a-1.jsonl", b"\n".join(lines[:3]) + b"\n")
    put(f"{bucket}/preds/a-2.jsonl", b"\n".join(lines[3:]) + b"\n")
    put(f"{bucket}/preds/ignored.csv", b"key\n1\n")
    spec = job(
        {"dataset": {"path": f"{bucket}/src/"}, "join_on": ["id"]},
        pick_model,
        f"{bucket}/out",  # type: ignore[arg-type]
        {"type": "LONG"},
        predictions={
            "a": {
                "dataset": f"{bucket}/preds/*.jsonl",
                "join_on": ["key"],
                "columns": ["data", "is_default"],
            }
        },
        sink={"columns": ["id", "result"]},
    )
    report = run(spec)
    written = read(f"{bucket}/out")
    assert report.rows == 6
    # The part files in name order, each in its row order; the key 9 joins no row.
    assert written.to_pydict() == {"id": [0, 2, 4, 1, 3, 5], "result": [0, 20, 40, 10, 30, 50]}
    assert all(name.startswith("part-00000-") for name in listing(f"{bucket}/out"))
    assert not [n for n in listing(bucket) if n.startswith(".")]  # no staging left


def test_save_modes_and_a_failed_job_in_a_bucket(
    bucket: str, pick_model: str, failing_model: str
) -> None:
    from tests.batch.tables import typed_table

    put(f"{bucket}/in.parquet", parquet_bytes(typed_table("long")))
    out = f"{bucket}/scores"

    def go(mode: str, model: str = pick_model) -> object:
        spec = short_job(model, f"{bucket}/in.parquet", out, result_type="LONG", save_mode=mode)
        return run(spec)

    go("errorifexists")
    with pytest.raises(BatchError, match="exists"):
        go("errorifexists")
    go("append")
    assert read(out).num_rows == 8 and len(listing(out)) == 2
    before = listing(out)
    put(f"{bucket}/ids.parquet", parquet_bytes(pa.table({"id": list(range(10))})))
    with pytest.raises(EnsembleFailed, match="seven is unlucky"):
        run(short_job(failing_model, f"{bucket}/ids.parquet", out, save_mode="overwrite"))
    assert listing(out) == before  # the failed overwrite left the sink as it was
    go("overwrite")
    assert read(out).num_rows == 4 and len(listing(out)) == 1
    single = f"{bucket}/one.parquet"
    run(short_job(pick_model, f"{bucket}/in.parquet", single, result_type="LONG"))
    assert read(single).column("result").to_pylist() == [2**40, -1, None, 0]
    assert not [n for n in listing(bucket) if n.startswith(".")]


def test_missing_objects_are_named(bucket: str, pick_model: str) -> None:
    with pytest.raises(BatchError, match="no such file or directory"):
        run(short_job(pick_model, f"{bucket}/absent.parquet", f"{bucket}/o"))
    with pytest.raises(BatchError, match="no file matches"):
        run(short_job(pick_model, f"{bucket}/absent/*.parquet", f"{bucket}/o"))


def test_the_output_is_put_in_place_by_copies_inside_the_store(
    bucket: str, store: Emulator, pick_model: str
) -> None:
    from tests.batch.tables import typed_table

    put(f"{bucket}/in.parquet", parquet_bytes(typed_table("long")))
    for out, mode in [("scores", "errorifexists"), ("scores", "append"), ("scores", "overwrite")]:
        run(short_job(pick_model, f"{bucket}/in.parquet", f"{bucket}/{out}", save_mode=mode))
    for mode in ("errorifexists", "overwrite"):
        run(short_job(pick_model, f"{bucket}/in.parquet", f"{bucket}/one.parquet", save_mode=mode))
    name = bucket.partition("://")[2]
    asked = store.requests()
    final = [r for r in asked if r.key.startswith((f"{name}/scores/", f"{name}/one.parquet"))]
    # Directory markers aside (empty objects named `dir/`, which pyarrow's S3 keeps),
    # one copy per output file, each from the staged file beside the sink; none uploaded.
    written = [r for r in final if r.action in ("upload", "copy") and not r.key.endswith("/")]
    assert [r.action for r in written] == ["copy"] * 5
    assert all(r.source and r.source.startswith(f"{name}/.") for r in written)
    # And nothing staged was fetched back.
    assert not [r for r in asked if r.key.startswith(f"{name}/.") and r.action == "read"]
    assert len(listing(f"{bucket}/scores")) == 1
    assert not [n for n in listing(bucket) if n.startswith(".")]


class FailingCopies:
    """A store's file system whose copies fail after the first `good` ones."""

    def __init__(self, fs: pafs.FileSystem, good: int) -> None:
        self.fs, self.good = fs, good

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fs, name)

    def copy_file(self, source: str, target: str) -> None:
        if self.good == 0:
            raise OSError("the store refused the copy")
        self.good -= 1
        self.fs.copy_file(source, target)


def test_a_failed_copy_leaves_the_sink_as_it_was(bucket: str) -> None:
    fs, root = storage.locate(bucket)
    for old in ("part-a", "part-b"):
        put(f"{bucket}/out/{old}", old.encode())
    for new in ("part-x", "part-y", "part-z"):
        put(f"{bucket}/.out.tmp/{new}", new.encode())
    failing: Any = FailingCopies(fs, good=2)
    for publish in (storage.replace, storage.add):
        with pytest.raises(OSError, match="refused"):
            publish(failing, f"{root}/.out.tmp", f"{root}/out")
        assert listing(f"{bucket}/out") == ["part-a", "part-b"]  # the two copies made deleted
        assert listing(f"{bucket}/.out.tmp") == ["part-x", "part-y", "part-z"]
        failing.good = 2
    storage.add(fs, f"{root}/.out.tmp", f"{root}/out")
    assert listing(f"{bucket}/out") == ["part-a", "part-b", "part-x", "part-y", "part-z"]
    for new in ("part-1", "part-2"):
        put(f"{bucket}/.out.tmp/{new}", new.encode())
    storage.replace(fs, f"{root}/.out.tmp", f"{root}/out")
    assert listing(f"{bucket}/out") == ["part-1", "part-2"]
    assert listing(bucket) == ["out/part-1", "out/part-2"]


def test_a_directory_sink_starts_a_new_part_file_past_its_size(
    bucket: str, pick_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyfunc_ensembler.batch import io
    from tests.batch.tables import typed_table

    monkeypatch.setattr(io, "PART_BYTES", 1)  # every batch past the first starts a part
    put(f"{bucket}/in.parquet", parquet_bytes(typed_table("long")))
    spec = short_job(pick_model, f"{bucket}/in.parquet", f"{bucket}/out", result_type="LONG")
    run(spec, batch_size=2, processes=1)
    parts = listing(f"{bucket}/out")
    assert [p[:11] for p in parts] == ["part-00000-", "part-00001-"]
    assert len({p[11:] for p in parts}) == 1  # one job's id
    assert read(f"{bucket}/out").column("result").to_pylist() == [2**40, -1, None, 0]
