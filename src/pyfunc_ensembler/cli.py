"""The command line: ``pyfunc-ensembler serve | check | image | batch``.

Options are generated from `Settings`, so each flag has an ``ENSEMBLER_*`` twin and
one help text. Nothing below this module parses arguments, and nothing but `main`
prints an error: commands raise, `main` turns what they raise into one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from pyfunc_ensembler.errors import EnsemblerError, LoadError, MissingExtra, UsageError
from pyfunc_ensembler.image import DEFAULT_IMAGE_REPO
from pyfunc_ensembler.settings import Settings, env_name, parse_value
from pyfunc_ensembler.version import __version__

SERVE_EXAMPLES = """\
examples:
  pyfunc-ensembler serve ./my-ensembler                 # a saved model directory, on :8083
  pyfunc-ensembler serve models:/ensembler/3 --workers 4
  ENSEMBLER_MODEL_URI=runs:/<run-id>/ensembler pyfunc-ensembler serve

  curl -s localhost:8083/ensemble -H 'Content-Type: application/json' \\
    -d '{"request": {}, "response": {"route_responses": [{"route": "control", "data": 1}]}}'
"""

CHECK_EXAMPLES = """\
examples:
  pyfunc-ensembler check ./my-ensembler
  pyfunc-ensembler check ./my-ensembler --request request.json --header Turing-Req-Id=abc

Exit status: 0 when the model loads (and answers the request with 200), 1 otherwise,
with a one-line reason on stderr. Use it as the dry run of a container build.
"""

IMAGE_EXAMPLES = """\
examples:
  pyfunc-ensembler image ./my-ensembler               # --build-arg lines, one a line
  docker build $(pyfunc-ensembler image ./my-ensembler) -f docker/app.Dockerfile \\
    -t my-ensembler ./my-ensembler
  pyfunc-ensembler image models:/ensembler/3 --format json

Exit status: 0, or 1 with the reason on stderr when no image of ours can serve the
model (no python_function flavour; a Python other than 3.10-3.13). --format
requirements prints the model's pip requirements minus those the server replaces
(turing-sdk, mlflow, pyfunc-ensembler), and fails unless this Python can load it:
docker/install-model.sh uses it inside the image build.
"""

BATCH_EXAMPLES = """\
examples:
  pyfunc-ensembler batch job.yaml                       # a BatchEnsemblingJob file
  pyfunc-ensembler batch job.yaml --engine spark --master spark://host:7077
  pyfunc-ensembler batch --ensembler ./my-ensembler --input rows.parquet \\
    --output scores/ --result-type DOUBLE             # a table with __predictions__ columns
  pyfunc-ensembler batch --ensembler ./my-ensembler --input 'parts/*.jsonl' \\
    --output out.csv --save-mode overwrite            # JSON text answers, to CSV

The job file's shape, the result types and save modes: docs/batch.md. Prints one
line with rows and rows/s at the end (a progress bar on a terminal); exit status 0,
or 1 with the reason (an invalid job lists every problem with its field's path), or
130/143 when SIGINT/SIGTERM stopped it. A job that fails leaves the output as it was.
"""


EXTRAS = {
    "batch": ("pyarrow",),
    "spark": ("pyspark", "pyarrow"),
    "tracing": (
        "opentelemetry.sdk",
        "opentelemetry.exporter.otlp.proto.http",
        "opentelemetry.propagators.b3",
    ),
}
"""The modules each optional extra of pyproject.toml installs (MLflow brings
``opentelemetry`` itself, so the tracing extra is known by its own packages)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; whatever fails ends here, as one line on stderr and a status.

    Arguments that do not fit together exit with 2 (argparse's own mistakes, with the
    usage, exit so too); a failure of ours (`EnsemblerError`: the model does not
    load, an invalid job, a missing extra) or of the system (`OSError`: the port is
    taken) exits with 1. People read these, so no traceback; anything else is a bug,
    and its traceback is kept. Ctrl-C (and SIGTERM in `batch`) ends with one line too,
    and the status a shell gives a process that signal killed (130, 143).
    """
    return _run(build_parser().parse_args(argv))


def program() -> NoReturn:
    """The ``pyfunc-ensembler`` program (and ``python -m pyfunc_ensembler``): `main`, then exit.

    A batch job's process ends without the interpreter's teardown
    (`lifecycle.exit_now`), a tenth of a million-row job's time.
    """
    args = build_parser().parse_args()
    status = _run(args)
    if args.run is run_batch:
        from pyfunc_ensembler.lifecycle import exit_now

        exit_now(status)
    sys.exit(status)


def _run(args: argparse.Namespace) -> int:
    prog = args.parser.prog
    try:
        return int(args.run(_settings(args), args))
    except UsageError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        return 2
    except LoadError as exc:
        print(f"{prog}: cannot load the model: {exc.message}", file=sys.stderr)
    except EnsemblerError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
    except OSError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)  # lifecycle.Interrupted's
        print(f"{prog}: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    return 1


def import_extra(extra: str, feature: str, *modules: str) -> None:
    """Import `modules`, which need `extra`: if it is missing, say which to install.

    Importing them (not just looking them up) is the check, so an extra that is only
    half installed is caught too; a module missing for another reason is not blamed
    on the extra.
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if not any(_same_package(missing, provided) for provided in EXTRAS[extra]):
                raise
            raise MissingExtra(feature, extra, missing) from None


def _same_package(missing: str, provided: str) -> bool:
    # `opentelemetry.exporter` is missing when `opentelemetry.exporter.otlp...` is.
    return f"{missing}.".startswith(f"{provided}.") or provided.startswith(f"{missing}.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyfunc-ensembler",
        description="Serve MLflow pyfunc ensemblers to Turing routers, and run them in batch.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    serve = _command(commands, "serve", "Serve POST /ensemble over HTTP.", SERVE_EXAMPLES)
    _add_settings(serve)
    serve.set_defaults(run=run_serve)
    check = _command(
        commands, "check", "Load a model, optionally answer one request.", CHECK_EXAMPLES
    )
    check.add_argument("model_uri", metavar="MODEL_URI", help="MLflow model URI to load.")
    check.add_argument(
        "--request", type=Path, metavar="FILE", help="A router request body (JSON) to answer."
    )
    check.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="K=V",
        help="A request header (repeatable).",
    )
    check.add_argument(
        "--force-mlflow", action="store_true", default=None, help=_help("force_mlflow")
    )
    check.set_defaults(run=run_check)
    image = _command(
        commands, "image", "Print the base image and build arguments a model needs.", IMAGE_EXAMPLES
    )
    image.add_argument("model_uri", metavar="MODEL_URI", help="MLflow model URI to inspect.")
    image.add_argument(
        "--format",
        choices=("args", "json", "requirements"),
        default="args",
        help="What to print (default: docker --build-arg lines).",
    )
    image.add_argument(
        "--image-repo",
        default=DEFAULT_IMAGE_REPO,
        metavar="NAME",
        help="Repository of the base images, tagged VERSION-pyX.Y (default: %(default)s).",
    )
    image.add_argument(
        "--download",
        type=Path,
        metavar="DIR",
        help="Copy or download the model to DIR first (used while building an image).",
    )
    image.set_defaults(run=run_image)
    _add_batch_command(commands)
    return parser


def _command(commands: Any, name: str, summary: str, examples: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(parser=parser)
    return parser


def _help(name: str) -> str:
    field = next(f for f in dataclasses.fields(Settings) if f.name == name)
    return f"{field.metadata['help']} [env {env_name(name)}]"


def _add_settings(parser: argparse.ArgumentParser) -> None:
    for field in dataclasses.fields(Settings):
        help_text = (
            f"{field.metadata['help']} [env {env_name(field.name)}; default {field.default!r}]"
        )
        if field.metadata.get("positional"):
            parser.add_argument(field.name, nargs="?", metavar=field.name.upper(), help=help_text)
        elif isinstance(field.default, bool):
            flag = "--" + field.name.replace("_", "-")
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(
                "--" + field.name.replace("_", "-"),
                type=_flag_parser(field),
                choices=field.metadata.get("choices"),
                metavar=field.name.upper() if not field.metadata.get("choices") else None,
                default=None,
                help=help_text,
            )


def _flag_parser(field: dataclasses.Field[Any]) -> Any:
    def parse(raw: str) -> Any:
        try:
            return parse_value(field, raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _settings(args: argparse.Namespace) -> Settings:
    names = {f.name for f in dataclasses.fields(Settings)}
    try:
        return Settings.from_environ(**{k: v for k, v in vars(args).items() if k in names})
    except ValueError as exc:  # a value, or a pair of values, Settings refuses
        raise UsageError(str(exc)) from None


def run_serve(settings: Settings, args: argparse.Namespace) -> int:
    from pyfunc_ensembler.serve import serve

    if not settings.model_uri:
        raise UsageError(f"no model: give MODEL_URI or set {env_name('model_uri')}")
    if settings.tracing != "off":
        # Imported here, before the model loads, to fail fast; the workers instrument.
        modules = ["pyfunc_ensembler.tracing"]
        if settings.tracing == "otlp":
            modules.append("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        import_extra("tracing", f"--tracing {settings.tracing}", *modules)
    return serve(settings)


def run_check(settings: Settings, args: argparse.Namespace) -> int:
    from pyfunc_ensembler.check import check

    return check(settings, args.request, args.header)


def run_image(settings: Settings, args: argparse.Namespace) -> int:
    from pyfunc_ensembler.image import plan, require_this_python

    model = plan(args.model_uri, image_repo=args.image_repo, download=args.download)
    for note in model.notes:
        print(f"pyfunc-ensembler: note: {note}", file=sys.stderr)
    for dropped in model.dropped:
        print(
            f"pyfunc-ensembler: left out {dropped.requirement!r}: {dropped.reason}", file=sys.stderr
        )
    if args.format == "json":
        print(json.dumps(model.as_json(), indent=2))
    elif args.format == "requirements":
        require_this_python(model)
        print("\n".join(model.requirements))
    else:
        print("\n".join(f"--build-arg {k}={v}" for k, v in model.build_args.items()))
    return 0


def _add_batch_command(commands: Any) -> None:
    from pyfunc_ensembler.batch import ENGINES

    batch = _command(
        commands,
        "batch",
        "Ensemble a whole table with a job file or the short form.",
        BATCH_EXAMPLES,
    )
    batch.add_argument("job", nargs="?", metavar="JOB.yaml", help="A BatchEnsemblingJob file.")
    short = batch.add_argument_group("short form (instead of JOB.yaml)")
    short.add_argument("--ensembler", metavar="URI", help="MLflow model URI of the ensembler.")
    short.add_argument("--input", metavar="PATH", help="Table with __predictions__<route> columns.")
    short.add_argument("--output", metavar="PATH", help="Where to write (a file or a directory).")
    short.add_argument("--result-column", default="result", help="Default: %(default)s.")
    short.add_argument(
        "--result-type",
        default="JSON",
        help="DOUBLE, FLOAT, INTEGER, LONG, STRING, BOOLEAN, "
        "ARRAY or JSON (the answer's JSON text; the default).",
    )
    short.add_argument("--item-type", help="Item type of an ARRAY result.")
    short.add_argument(
        "--on-invalid",
        choices=("fail", "null"),
        default="fail",
        help="An answer that does not fit the type: fail (default) or null.",
    )
    batch.add_argument(
        "--save-mode",
        choices=("errorifexists", "overwrite", "append", "ignore"),
        help="When the output exists (default: the job's, else errorifexists).",
    )
    batch.add_argument("--engine", choices=ENGINES, default="local", help="Default: local.")
    batch.add_argument("--master", help="Spark master URL (--engine spark; default local[*]).")
    batch.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="ROWS",
        help="Rows per Arrow batch (local engine; default 65536).",
    )
    batch.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="Processes that ensemble (local engine; default: the CPUs this one may use). "
        "The output is the same, in the same order.",
    )
    batch.add_argument("--report", type=Path, metavar="FILE", help="Also write the report as JSON.")
    batch.add_argument(
        "--force-mlflow", action="store_true", default=None, help=_help("force_mlflow")
    )
    batch.set_defaults(run=run_batch)


def run_batch(settings: Settings, args: argparse.Namespace) -> int:
    import dataclasses as dc

    from pyfunc_ensembler import batch
    from pyfunc_ensembler.batch.job import SaveMode

    if args.engine == "spark":
        import_extra("spark", "--engine spark", "pyfunc_ensembler.batch.spark", "pyspark.sql")
    else:
        from pyfunc_ensembler.batch import startup

        startup.prepare(args.processes)  # before pyarrow is imported
        import_extra("batch", "pyfunc-ensembler batch", "pyfunc_ensembler.batch.local")
    short = (args.ensembler, args.input, args.output)
    if args.job and any(short):
        raise UsageError("give either JOB.yaml or --ensembler/--input/--output, not both")
    if args.job:
        job = batch.load_job(args.job)
    elif all(short):
        job = batch.short_job(
            args.ensembler,
            args.input,
            args.output,
            result_column=args.result_column,
            result_type=args.result_type,
            item_type=args.item_type,
            on_invalid=args.on_invalid,
        )
    else:
        raise UsageError("give JOB.yaml, or all of --ensembler, --input and --output")
    if args.save_mode:
        mode = SaveMode(args.save_mode)
        job = dc.replace(job, sink=dc.replace(job.sink, save_mode=mode))
    options: dict[str, Any] = {"force_mlflow": bool(args.force_mlflow)}
    if args.engine == "spark":
        options["master"] = args.master
    else:
        if args.batch_size:
            options["batch_size"] = args.batch_size
        if args.processes is not None:
            options["processes"] = args.processes
    from pyfunc_ensembler.lifecycle import raise_on_signals

    raise_on_signals()  # the job stops as a failed one does: its sink is left as it was
    report = batch.run(job, args.engine, **options)
    print(report.summary(), file=sys.stderr)
    if args.report:
        args.report.write_text(json.dumps(report.as_dict(), indent=2))
    return 0
