#!/usr/bin/env bash
# Where imagegen's CPU goes on the peer benchmark's path: imagegen (MODE passthrough|stored) in front of
# the fake OpenAI-compatible upstream, CONC wrk connections, py-spy (the project's bench extra) sampling
# `imagegen serve` (--gil: Python actually running). Prints the top functions by own time and by total
# time. Needs ./setup.sh first and VENV (with py-spy).
# Usage: VENV=.venv bench/peer/profile.sh [MODE=passthrough] [SECONDS=10] [CONC=16]
set -uo pipefail
: "${VENV:?set VENV to a venv with imagegen and py-spy installed}"
VENV=$(cd "$VENV" && pwd) || exit 1
D=$(cd "$(dirname "$0")" && pwd); cd "$D"
W=${BENCH_PEER_DIR:-$(dirname "$(mktemp -u)")/imagegen-bench-peer}; mkdir -p "$W/results"
MODE=${1:-passthrough}; SECONDS_=${2:-10}; CONC=${3:-16}
raw="$W/results/profile-$MODE-$(date +%Y%m%d-%H%M%S).txt"
./start_fake.sh 18080 0 >/dev/null || exit 1
./start_imagegen.sh 15000 "$MODE" "$VENV" >/dev/null || { ./stop.sh fake; exit 1; }
pid=$(cat "$W/run/imagegen.pid")
export BENCH_MODEL=fake-image BENCH_API_KEY=unused
"$W/tools/bin/wrk" -t1 -c"$CONC" -d2s -s images_post.lua http://127.0.0.1:15000/v1/images/generations >/dev/null
"$VENV/bin/py-spy" record --gil -r 200 -f raw -o "$raw" -d "$SECONDS_" -p "$pid" >/dev/null 2>&1 &
spy=$!
"$W/tools/bin/wrk" -t1 -c"$CONC" -d"$((SECONDS_ + 1))s" -s images_post.lua \
  http://127.0.0.1:15000/v1/images/generations | grep WRKRESULT
wait "$spy"
./stop.sh imagegen >/dev/null; ./stop.sh fake >/dev/null
(cd "$D/../.." && "$VENV/bin/python" -m bench.flame "$raw")
