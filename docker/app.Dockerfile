# syntax=docker/dockerfile:1
# An image that serves one ensembler, baked in at /model. The build context is the
# model directory; `pyfunc-ensembler image MODEL` prints the build arguments it needs:
#
#   docker build $(pyfunc-ensembler image ./my-ensembler) \
#       -f docker/app.Dockerfile -t my-ensembler ./my-ensembler
#
# Or download the model by MLflow URI at build time (any context, e.g. an empty dir):
#
#   docker build $(pyfunc-ensembler image models:/ensembler/3) \
#       --build-arg MODEL_URI=models:/ensembler/3 \
#       --build-arg MLFLOW_TRACKING_URI=http://mlflow:5000 \
#       -f docker/app.Dockerfile -t ensembler:3 empty-dir/
#
# The model's requirements are installed beside the base image's pyfunc-ensembler
# (turing-sdk and mlflow pins are left out), then `pyfunc-ensembler check` loads the
# model as the image's user: a broken ensembler, or one that user cannot read, fails
# the build, not the deployment. No compilers here:
# a model requirement without a wheel for the platform fails the build (see README).

ARG PYTHON_VERSION=3.11
ARG BASE_IMAGE=pyfunc-ensembler:0.1.0-py${PYTHON_VERSION}

# One stage on purpose: pip then writes only the model's own packages into a new
# layer. Copying a venv over from a build stage would add the whole venv again.
FROM ${BASE_IMAGE}
# Root only to install into the venv; the image runs as 10001 again below.
USER 0
COPY . /model
ARG MODEL_URI=""
ARG MLFLOW_TRACKING_URI=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI}" \
    /opt/pyfunc-ensembler/install-model.sh /opt/venv "${MODEL_URI:-/model}" /model
USER 10001
RUN pyfunc-ensembler check /model
