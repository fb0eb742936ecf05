#!/usr/bin/env bash
# One side-by-side run (`make bench-peer`): LiteLLM's proxy, imagegen with provider URLs passed through,
# imagegen with images stored, each in turn against the same fake upstream with the same short suite.
# Needs ./setup.sh first and VENV pointing at a venv with imagegen installed.
# Output: $BENCH_PEER_DIR/results/compare-<ts>.txt (raw lines), the markdown table in
# bench/results/peer-<ts>.md, and the same table in BENCHMARKS.md (its "Peer comparison" section).
set -uo pipefail
: "${VENV:?set VENV to a venv with imagegen installed}"
VENV=$(cd "$VENV" && pwd) || exit 1   # relative to the caller's directory
D=$(cd "$(dirname "$0")" && pwd); cd "$D"
ROOT=$(cd "$D/../.." && pwd)
W=${BENCH_PEER_DIR:-$(dirname "$(mktemp -u)")/imagegen-bench-peer}; mkdir -p "$W"  # venv, tools, run, logs, results
export REPS=${REPS:-1} DURATION=${DURATION:-15} CROSS=0 SLOW_PY=0 CONC_FAST=${CONC_FAST:-64} CONC_SLOW=${CONC_SLOW:-1000}
ts=$(date +%Y%m%d-%H%M%S); out="$W/results/compare-$ts.txt"; mkdir -p "$W/results"
keep() { grep -E "^(RESULT|PROCMON|# suite|# gateway)" | sed "s/^/GW=$1 /" | tee -a "$out"; }
echo "START $(date -Is) nproc=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg) litellm=$("$W/venv/bin/python" -c 'from importlib.metadata import version; print(version("litellm"))')" | tee -a "$out"
./start_fake.sh 18080 0 >/dev/null || exit 1
echo "FAKEPID $(cat "$W/run/fake.pid")" | tee -a "$out"
LITELLM_WORKERS=${LITELLM_WORKERS:-$(nproc)}
if ./start_litellm.sh 14000 "$LITELLM_WORKERS" >/dev/null; then
  echo "GW=litellm WORKERS $LITELLM_WORKERS" | tee -a "$out"
  GW=http://127.0.0.1:14000 MODEL=fake-image LABEL_GW=litellm ./run_suite.sh | keep litellm
fi
./stop.sh litellm >/dev/null
for mode in passthrough stored; do
  if ./start_imagegen.sh 15000 "$mode" "$VENV" >/dev/null; then
    echo "GW=imagegen-$mode WORKERS ${WORKERS:-1}" | tee -a "$out"
    GW=http://127.0.0.1:15000 MODEL=fake-image API_KEY=unused GW_PID=$(cat "$W/run/imagegen.pid") \
      LABEL_GW="imagegen-$mode" ./run_suite.sh | keep "imagegen-$mode"
  fi
  ./stop.sh imagegen >/dev/null
done
./stop.sh fake >/dev/null
echo "END $(date -Is) load=$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
mkdir -p "$ROOT/bench/results"
"$VENV/bin/python" "$D/table.py" "$out" --markdown "$ROOT/bench/results/peer-$ts.md" \
  --benchmarks "$ROOT/BENCHMARKS.md" --json "$ROOT/bench/results/peer-latest.json"
echo "== $out"
