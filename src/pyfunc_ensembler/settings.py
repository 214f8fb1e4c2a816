"""One typed settings object, built once at start-up and passed down.

Every field is a command-line option (``--max-body-size``) and an environment
variable (``ENSEMBLER_MAX_BODY_SIZE``); a flag beats the variable, which beats the
default. Two plain variables the platform sets are honoured when their
``ENSEMBLER_*`` twin is unset (see `FALLBACK_ENV`). Only `cli` reads flags and
`from_environ` reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, Literal, get_args

ENV_PREFIX = "ENSEMBLER_"
# The settings that take one of a few words: each a Literal type, whose words are also the
# command line's choices and what `Settings` checks at construction.
Server = Literal["native", "asgi"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
LogFormat = Literal["text", "json"]
Tracing = Literal["off", "console", "otlp"]
# A poll blocks the worker's event loop (timers, signals) for as long: keep it short.
MAX_BUSY_POLL = 10_000
FALLBACK_ENV = {
    # Turing's own server reads LOG_LEVEL; Turing sets it on every ensembler service.
    "log_level": "LOG_LEVEL",
    # Knative (Turing runs ensemblers as Knative services) tells the container its port.
    "port": "PORT",
}
"""Settings read from a plain variable when their ``ENSEMBLER_*`` variable is unset."""


def _field(default: Any, help: str, **meta: Any) -> Any:
    return dataclasses.field(default=default, metadata={"help": help, **meta})


@dataclasses.dataclass(frozen=True)
class Settings:
    model_uri: str = _field(
        "",
        "MLflow model URI: a local directory, runs:/…, models:/name/version, s3://…",
        positional=True,
    )
    host: str = _field("0.0.0.0", "Address to bind.")
    port: int = _field(
        8083, "Port to listen on (Turing's router calls 8083); else $PORT, as Knative sets it."
    )
    workers: int = _field(1, "Worker processes sharing the port; a dead worker is replaced.")
    server: Server = _field(
        "native",
        "Front end: 'native' (HTTP/1.1 on uvloop + llhttp) or 'asgi' (uvicorn).",
        choices=get_args(Server),
    )
    log_level: LogLevel = _field("warning", "Log level.", choices=get_args(LogLevel))
    max_body_size: int = _field(16 * 1024 * 1024, "Largest request body in bytes (413 above).")
    max_header_size: int = _field(
        64 * 1024, "Largest request line + headers in bytes (431 above; native front end)."
    )
    receive_timeout: float = _field(
        30.0, "Seconds a client may take to send a whole request (408 after; native; 0: none)."
    )
    force_mlflow: bool = _field(
        False, "Load through mlflow.pyfunc even when the lean loader could."
    )
    debug: bool = _field(False, "Put tracebacks in error answers (never in production).")
    # Operations (issue 4).
    log_format: LogFormat = _field("text", "Log line format.", choices=get_args(LogFormat))
    access_log: bool = _field(False, "Log one line per POST /ensemble (status, time, sizes, id).")
    graceful_timeout: int = _field(
        30, "Seconds requests in flight may take to finish after SIGTERM/SIGINT."
    )
    keepalive_timeout: int = _field(
        75, "Seconds an idle keep-alive connection stays open (above the mesh's 60 s)."
    )
    max_concurrency: int = _field(
        100, "Requests answered at once per worker; 503 + Retry-After above (0: no limit)."
    )
    request_timeout: float = _field(
        0.0, "Deadline in seconds for answering a request; 504 after it (0: none)."
    )
    sync_threads: int = _field(
        0, "Run a sync ensemble() in a pool of this many threads (0: inline on the loop)."
    )
    busy_poll: int = _field(
        0,
        "Microseconds to poll for the next request after an answer instead of sleeping, "
        "while one connection is open and nothing else is in flight (native; 0: sleep). "
        "Spares the next request a wake-up (~40 µs in a VM) for up to a core of CPU "
        "while requests come one at a time.",
    )
    isolate: bool = _field(
        False,
        "Run the ensembler in a process of its own per worker: if it dies (os._exit, "
        "SIGSEGV, SIGKILL) its request gets 500 and a new one starts; a sync one past "
        "--request-timeout is killed. Costs one local socket hop per request.",
    )
    max_ensembler_rss: int = _field(
        0,
        "With --isolate: replace the ensembler's process after an answer once its peak "
        "resident memory (MiB, the model's shared pages included) passes this (0: never).",
    )
    metrics_port: int = _field(0, "Also serve /metrics on this port (0: the main port only).")
    tracing: Tracing = _field(
        "off",
        "OpenTelemetry spans for POST /ensemble: 'otlp' (OTEL_EXPORTER_OTLP_* variables; "
        "needs the 'tracing' extra) or 'console' (stderr).",
        choices=get_args(Tracing),
    )

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            choices = field.metadata.get("choices")
            value = getattr(self, field.name)
            if choices and value not in choices:
                words = ", ".join(repr(choice) for choice in choices)
                raise ValueError(f"{field.name}={value!r}: choose one of {words}")
        if self.isolate and self.sync_threads:
            raise ValueError("--sync-threads and --isolate exclude each other")
        if self.max_ensembler_rss and not self.isolate:
            raise ValueError("--max-ensembler-rss needs --isolate")
        if not 0 <= self.busy_poll <= MAX_BUSY_POLL:
            raise ValueError(f"--busy-poll: between 0 and {MAX_BUSY_POLL} microseconds")
        if self.busy_poll and self.server != "native":
            raise ValueError("--busy-poll needs the native front end")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``ENSEMBLER_*`` variables, then `overrides` (from flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            variable = env_name(field.name)
            if variable not in environ and field.name in FALLBACK_ENV:
                variable = FALLBACK_ENV[field.name]
            raw = environ.get(variable)
            if raw is not None:
                values[field.name] = parse_value(field, raw, variable)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def parse_value(field: dataclasses.Field[Any], raw: str, variable: str | None = None) -> Any:
    """Read one setting from text, as it comes from the environment (`variable`, named in
    errors; its ``ENSEMBLER_*`` name if not given)."""
    name = variable or env_name(field.name)
    kind: type[Any] = type(field.default)
    if kind is bool:
        if raw.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
            raise ValueError(f"{name}={raw!r} is not a boolean")
        return raw.lower() in ("1", "true", "yes", "on")
    try:
        value = kind(raw.lower() if field.name == "log_level" else raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    choices = field.metadata.get("choices")
    if choices and value not in choices:
        raise ValueError(f"{name}={raw!r}: choose one of {', '.join(choices)}")
    return value
