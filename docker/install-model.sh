#!/bin/sh
# Bake one ensembler into an environment made by install-base.sh.
#
#   install-model.sh VENV MODEL TARGET_DIR
#
# MODEL is a model directory or any MLflow URI (downloaded to TARGET_DIR). Its own
# requirements are installed beside our package, in one pip resolve with the
# requirement line install-base.sh pinned, so the model can neither replace nor
# downgrade the server. `pyfunc-ensembler image` leaves out what the server replaces
# (turing-sdk, mlflow, pyfunc-ensembler) and refuses a model this Python cannot load.
# The Dockerfiles then run `pyfunc-ensembler check` as the image's user, so that a
# broken ensembler, or a model that user cannot read, fails the build.
# docker/app.Dockerfile and docker/turing.Dockerfile run this very script; so do the tests.
set -eu

venv=$1
model=$2
target=$3

requirements=$(mktemp)
trap 'rm -f "$requirements"' EXIT

"$venv/bin/pyfunc-ensembler" image "$model" --download "$target" --format requirements \
    > "$requirements"
"$venv/bin/python" -m pip install --no-input \
    -r "$venv/pyfunc-ensembler.requirement" -r "$requirements"
