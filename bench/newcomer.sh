#!/usr/bin/env bash
# A newcomer's `make serve`, measured: clone this repository at COMMIT (default HEAD) into a
# scratch directory, run `make serve` there with an empty pip cache, and time it until the
# example ensembler answers; then print what it installed and stop the server.
#   bench/newcomer.sh [COMMIT] [PORT]
# The README's `make serve` numbers come from it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
commit=${1:-HEAD}
port=${2:-18083}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
git clone -q "$repo" "$scratch/clone"
git -C "$scratch/clone" checkout -q "$(git -C "$repo" rev-parse "$commit")"
cd "$scratch/clone"
start=$(date +%s.%N)
PIP_CACHE_DIR="$scratch/pip-cache" setsid make serve PORT="$port" > "$scratch/make.log" 2>&1 &
make_pid=$!
stop() { kill -TERM -- "-$make_pid" 2>/dev/null || true; wait "$make_pid" 2>/dev/null || true; }
until curl -sf "localhost:$port/ensemble" -H 'Turing-Req-Id: newcomer' \
    -d @examples/weighted/request.json > "$scratch/answer.json"; do
  if ! kill -0 "$make_pid" 2>/dev/null; then
    tail -20 "$scratch/make.log" >&2
    echo "make serve ended before it answered" >&2
    exit 1
  fi
  sleep 0.5
done
end=$(date +%s.%N)
stop
packages=$(.venv/bin/python -m pip list --format=freeze 2>/dev/null | wc -l)
echo "commit $(git rev-parse --short HEAD): first answer $(echo "$end - $start" | bc) s after" \
  "make serve began; .venv $(du -sm .venv | cut -f1) MB, $packages packages;" \
  "downloaded $(du -sm "$scratch/pip-cache" 2>/dev/null | cut -f1 || echo 0) MB"
echo "answer: $(cat "$scratch/answer.json")"
