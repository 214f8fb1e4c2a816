"""``python -m pyfunc_ensembler_runner --mlflow_ensembler_dir DIR [--dry_run] [-l LEVEL]``.

Behaves like Turing's runner, so Turing's image recipe works unchanged: serve the
ensembler on port 8083, or with ``--dry_run`` load it and exit (0, or 1 on failure).
Every ``ENSEMBLER_*`` setting still applies (workers, front end, limits).
"""

from __future__ import annotations

import argparse
import sys

from pyfunc_ensembler.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pyfunc_ensembler_runner",
        description="Turing-compatible entry point of pyfunc-ensembler.",
    )
    parser.add_argument(
        "--mlflow_ensembler_dir", required=True, help="The saved MLflow pyfunc ensembler."
    )
    parser.add_argument("--dry_run", action="store_true", help="Load the ensembler and exit.")
    parser.add_argument(
        "-l",
        "--log-level",
        dest="log_level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="Log level (else LOG_LEVEL / ENSEMBLER_LOG_LEVEL, default WARNING).",
    )
    # Turing's runner ignores flags it does not know; so do we.
    args, _ = parser.parse_known_args(argv)
    if args.dry_run:
        return cli_main(["check", args.mlflow_ensembler_dir])
    level = ["--log-level", args.log_level.lower()] if args.log_level else []
    return cli_main(["serve", args.mlflow_ensembler_dir, "--port", "8083", *level])


if __name__ == "__main__":
    sys.exit(main())
