# syntax=docker/dockerfile:1
# The Dockerfile for Turing's image builder, which builds each ensembler service's
# image with Kaniko from it and these build args, and nothing else (README, "Deploying
# with Turing"). An operator points three settings of Turing's at ours:
#
#   ImageBuildingConfig.BaseImage       pyfunc-ensembler:0.1.0-py3.11
#   KanikoConfig.BuildContextURI        this repository at its release tag
#   KanikoConfig.DockerfileFilePath     docker/turing.Dockerfile
#
# The model is fetched from GCS or S3 with a Python client in a stage of its own,
# thrown away with the client and the credentials; the image is then built as
# app.Dockerfile builds one: the model's requirements beside our package (turing-sdk
# and mlflow pins left out), `pyfunc-ensembler check` as the image's user, and the
# base image's entry point, which serves /model with no arguments on $PORT (Knative's),
# else 8083.

ARG BASE_IMAGE=pyfunc-ensembler:0.1.0-py3.11

# The download stage: it runs as root and holds the credentials Turing passes as
# build args, and none of it reaches the image (only /model is copied out of it).
FROM ${BASE_IMAGE} AS fetch
# hadolint ignore=DL3002
USER 0
ARG MLFLOW_ARTIFACT_STORAGE_TYPE=""
ARG MODEL_URL=""
ARG FOLDER_NAME=""
ARG MODEL_DEPENDENCIES_URL=""
ARG GOOGLE_APPLICATION_CREDENTIALS=""
ARG STORAGE_EMULATOR_HOST=""
# hadolint ignore=DL3064
ARG AWS_ACCESS_KEY_ID=""
# hadolint ignore=DL3064
ARG AWS_SECRET_ACCESS_KEY=""
ARG AWS_DEFAULT_REGION=""
ARG AWS_ENDPOINT_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN /opt/pyfunc-ensembler/fetch-turing-model.sh /opt/venv /model

FROM ${BASE_IMAGE}
USER 0
COPY --from=fetch /model /model
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN /opt/pyfunc-ensembler/install-model.sh /opt/venv /model /model
USER 10001
RUN pyfunc-ensembler check /model
