# Turing's own server in an image, for the side-by-side of bench/images.py: installed
# as bench/reference.sh installs it (turing-pyfunc-ensembler-service 0.16.2 and its
# pins), on the same base as ours, with the model where Turing's image has it and
# Turing's entry point: a shell form ENTRYPOINT, so a shell is PID 1, as in Turing's
# engines/pyfunc-ensembler-service/app.Dockerfile.
ARG BASE_IMAGE=localhost/python:3.11-slim
FROM ${BASE_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY reference.sh /opt/turing/
RUN /opt/turing/reference.sh python3
COPY model /opt/turing/artifacts/ensembler
WORKDIR /opt/turing
SHELL ["/bin/bash", "-c"]
# hadolint ignore=DL3025
ENTRYPOINT . .venv-ref/bin/activate && python -m pyfunc_ensembler_runner --mlflow_ensembler_dir ./artifacts/ensembler
