#!/usr/bin/env bash
# Install Turing's reference server and SDK into their own virtual environment, bench/.venv-ref.
#
# They claim Python <3.11 and pin MLflow 1.x, so they cannot live beside our package:
# both wheels go in with --no-deps --ignore-requires-python, then the versions of their
# needs that work on 3.11 (cloudpickle 2.0.0 cannot load a by-value class on 3.11,
# orjson 3.6.8 has no 3.11 wheel). Idempotent: a stamp file records what was installed,
# so a second run costs nothing. Usage: bench/reference.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${1:-${PYTHON:-python3}}
VENV=.venv-ref
REFERENCE=(turing-pyfunc-ensembler-service==0.16.2 turing-sdk==0.16.2.post3)
NEEDS=(mlflow==1.30.1 cloudpickle==2.2.1 orjson==3.13.0 tornado==6.1 numpy==1.26.4 pandas==1.5.3
       # What the two wheels import at run time beyond MLflow's own dependencies
       # (found by running them; --no-deps leaves these out).
       deprecation==2.1.0 PyPrind==2.11.3)
STAMP="$VENV/.installed-$(printf '%s\n' "${REFERENCE[@]}" "${NEEDS[@]}" | sha1sum | cut -c1-12)"

if [[ -f "$STAMP" ]]; then
    exit 0
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
pip() {
    # pip's dependency check would complain about the pins we override on purpose.
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
        | grep -v -e "is ignored: it is neither" -e "requires .*which is" -e "dependency resolver" \
        || true
}
pip --no-deps --ignore-requires-python "${REFERENCE[@]}"
pip "${NEEDS[@]}"
# Fail here, not in the middle of a benchmark, if anything is still missing.
"$VENV/bin/python" -c "import pyfunc_ensembler_runner.server, turing.ensembler, mlflow.pyfunc"
touch "$STAMP"
echo "reference installed in bench/$VENV"
