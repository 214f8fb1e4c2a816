#!/bin/sh
# Install pyfunc-ensembler from a locally built wheel into a fresh virtual environment.
#
#   install-base.sh WHEEL_DIR VENV [EXTRAS]
#
# docker/Dockerfile runs this very script; tests/test_container_scripts.py runs it too,
# in a clean venv, since no Docker engine runs where the tests do. It also writes
# VENV/pyfunc-ensembler.requirement, the one line that pins this exact wheel, so that
# install-model.sh can keep our package whatever a model's requirements say.
set -eu

wheel_dir=$(cd "$1" && pwd)
venv=$2
extras=${3:-}
python=${PYTHON:-python3}

set -- "$wheel_dir"/pyfunc_ensembler-*.whl
if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
    echo "install-base.sh: expected exactly one pyfunc_ensembler wheel in $wheel_dir" >&2
    exit 1
fi
wheel=$1

"$python" -m venv "$venv"
venv=$(cd "$venv" && pwd)
requirement="pyfunc-ensembler${extras:+[$extras]} @ file://$wheel"
echo "$requirement" > "$venv/pyfunc-ensembler.requirement"
"$venv/bin/python" -m pip install --no-input -r "$venv/pyfunc-ensembler.requirement"
"$venv/bin/pyfunc-ensembler" --version
