#!/bin/sh
# The image's entry point.
#
#   (no arguments)            pyfunc-ensembler serve   (the model at $ENSEMBLER_MODEL_URI)
#   --workers 4 ...           pyfunc-ensembler serve --workers 4 ...
#   check /model, image ...   pyfunc-ensembler check /model, ...
#   python -m pyfunc_ensembler_runner --mlflow_ensembler_dir /model   (any command: run it)
#
# `exec` leaves the server as PID 1, so it receives Kubernetes' SIGTERM itself and
# drains before exiting.
set -eu

if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    exec pyfunc-ensembler serve "$@"
fi
if command -v "$1" > /dev/null 2>&1; then
    exec "$@"
fi
exec pyfunc-ensembler "$@"
