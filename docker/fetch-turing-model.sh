#!/bin/sh
# Download the ensembler Turing's image builder names, with a Python client (no CLIs).
#
#   fetch-turing-model.sh VENV TARGET_DIR
#
# The environment holds Turing's build args (docker/turing.Dockerfile declares them):
#   MLFLOW_ARTIFACT_STORAGE_TYPE  gcs or s3
#   MODEL_URL                     the run's artifact URI, gs://... or s3://...
#   FOLDER_NAME                   <last segment of MODEL_URL>/ensembler
#   MODEL_DEPENDENCIES_URL        Turing's content-addressed copy of the model's conda.yaml
#   GOOGLE_APPLICATION_CREDENTIALS, STORAGE_EMULATOR_HOST          (gcs)
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION,
#   AWS_ENDPOINT_URL                                               (s3)
# The storage's client (google-cloud-storage or boto3) is installed into VENV, which
# turing.Dockerfile throws away with its stage; MLflow's artifact repositories drive
# it, as for any URI `pyfunc-ensembler image --download` is given.
set -eu

venv=$1
target=$2

fail() {
    echo "fetch-turing-model.sh: $*" >&2
    exit 2
}

case "${MLFLOW_ARTIFACT_STORAGE_TYPE:-}" in
    gcs) scheme=gs client="google-cloud-storage>=2.10" ;;
    s3) scheme=s3 client="boto3>=1.28" ;;  # 1.28: the first to read AWS_ENDPOINT_URL
    *) fail "MLFLOW_ARTIFACT_STORAGE_TYPE is '${MLFLOW_ARTIFACT_STORAGE_TYPE:-}', not gcs or s3" ;;
esac
model_url=${MODEL_URL:-}
model_url=${model_url%/}
case "$model_url" in
    "$scheme://"?*) ;;
    *) fail "MODEL_URL '$model_url' is no $scheme:// URI (MLFLOW_ARTIFACT_STORAGE_TYPE is $MLFLOW_ARTIFACT_STORAGE_TYPE)" ;;
esac
# Turing's own Dockerfile copies MODEL_URL into its working directory and serves
# ./FOLDER_NAME, whose first segment is MODEL_URL's last: the model is MODEL_URL/<rest>.
run_folder=${model_url##*/}
case "${FOLDER_NAME:-}" in
    "$run_folder"/?*) model_uri="$model_url/${FOLDER_NAME#*/}" ;;
    *) fail "FOLDER_NAME '${FOLDER_NAME:-}' does not start with '$run_folder/', MODEL_URL's last segment" ;;
esac

# A build arg Turing leaves out arrives empty: unset it, or a client would take ''
# for a key file, a region or an endpoint.
for name in GOOGLE_APPLICATION_CREDENTIALS STORAGE_EMULATOR_HOST AWS_ACCESS_KEY_ID \
    AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION AWS_ENDPOINT_URL; do
    eval "value=\${$name:-}"
    if [ -z "$value" ]; then
        unset "$name"
    fi
done

"$venv/bin/python" -m pip install --no-input "$client"
"$venv/bin/pyfunc-ensembler" image "$model_uri" --download "$target" > /dev/null

# Turing installs from its copy of conda.yaml; ours installs from the model's own
# files. The copy is written from the model's conda.yaml, so they must agree.
if [ -n "${MODEL_DEPENDENCIES_URL:-}" ]; then
    dependencies=$(mktemp -d)
    "$venv/bin/python" -c 'import sys, mlflow.artifacts
print(mlflow.artifacts.download_artifacts(artifact_uri=sys.argv[1], dst_path=sys.argv[2]))' \
        "$MODEL_DEPENDENCIES_URL" "$dependencies" > "$dependencies.path"
    if ! cmp -s "$(cat "$dependencies.path")" "$target/conda.yaml"; then
        fail "MODEL_DEPENDENCIES_URL ($MODEL_DEPENDENCIES_URL) differs from $model_uri/conda.yaml"
    fi
    rm -rf "$dependencies" "$dependencies.path"
fi
echo "fetch-turing-model.sh: $model_uri -> $target"
