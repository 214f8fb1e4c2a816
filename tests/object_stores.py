"""Real object stores on loopback, as Turing's image builder reads models from them.

GCS is gcp-storage-emulator and S3 is moto in server mode: both real HTTP servers,
started as processes (as the batch tests start them). `turing_layout` lays a model
out as Turing's API does.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from tests.batch import emulators
from tests.helpers import free_port

BUCKET = "turing-artifacts"
# What Turing's API keeps a model's conda.yaml under (imagebuilder.modelDependenciesPath).
DEPENDENCIES_PATH = "turing/model_dependencies"

# moto takes any key; this one is easy to look for in an image (it must not be there).
SECRET = "secret-0f1e2d-must-not-reach-the-image"

StoreKind = Literal["gcs", "s3"]


@dataclasses.dataclass(frozen=True)
class Store:
    kind: StoreKind
    endpoint: str

    @property
    def scheme(self) -> str:
        return "gs" if self.kind == "gcs" else "s3"

    @property
    def env(self) -> dict[str, str]:
        """What a client (and so a Turing build) needs to reach this store."""
        if self.kind == "gcs":
            return {"STORAGE_EMULATOR_HOST": self.endpoint}
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def make_bucket(self) -> None:
        if self.kind == "gcs":
            self._gcs().create_bucket(BUCKET)
        else:
            self._s3().create_bucket(Bucket=BUCKET)

    def put(self, key: str, data: bytes) -> str:
        """Store one object; its URI."""
        if self.kind == "gcs":
            self._gcs().bucket(BUCKET).blob(key).upload_from_string(data)
        else:
            self._s3().put_object(Bucket=BUCKET, Key=key, Body=data)
        return f"{self.scheme}://{BUCKET}/{key}"

    def _gcs(self):  # type: ignore[no-untyped-def]
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="test",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": self.endpoint},
        )

    def _s3(self):  # type: ignore[no-untyped-def]
        import boto3

        env = self.env
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )


@dataclasses.dataclass(frozen=True)
class TuringModel:
    """A model where Turing's API leaves it, and the build args its image builder passes."""

    store: Store
    model_url: str
    dependencies_url: str

    @property
    def build_args(self) -> dict[str, str]:
        return {
            "MODEL_URL": self.model_url,
            "MLFLOW_ARTIFACT_STORAGE_TYPE": self.store.kind,
            "FOLDER_NAME": f"{self.model_url.rsplit('/', 1)[1]}/ensembler",
            "MODEL_DEPENDENCIES_URL": self.dependencies_url,
            # Turing passes its mounted key file for GCS; an emulator never reads it.
            "GOOGLE_APPLICATION_CREDENTIALS": (
                "/secret/kaniko-secret.json" if self.store.kind == "gcs" else ""
            ),
            **self.store.env,
        }


def turing_layout(store: Store, model: Path, run_id: str) -> TuringModel:
    """Log `model` as a Turing ensembler run's artifacts: <run>/artifacts/ensembler/..."""
    prefix = f"mlflow/7/{run_id}/artifacts"
    for path in sorted(model.rglob("*")):
        if path.is_file():
            store.put(f"{prefix}/ensembler/{path.relative_to(model)}", path.read_bytes())
    conda = (model / "conda.yaml").read_bytes()
    digest = hashlib.sha256(conda).hexdigest()
    dependencies = store.put(f"{DEPENDENCIES_PATH}/{digest}", conda)
    return TuringModel(store, f"{store.scheme}://{BUCKET}/{prefix}", dependencies)


@contextmanager
def object_store(kind: StoreKind, work: Path) -> Iterator[Store]:
    """Start the store's server (tests/batch/emulators.py) on a free port, the bucket made."""
    port = free_port()
    server = (emulators.gcs if kind == "gcs" else emulators.s3)(port, work).start()
    try:
        store = Store(kind, f"http://127.0.0.1:{port}")
        store.make_bucket()
        yield store
    finally:
        server.stop()
