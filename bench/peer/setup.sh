#!/usr/bin/env bash
# Set up the peer benchmark's tooling in $BENCH_PEER_DIR (default $TMPDIR/imagegen-bench-peer), never in
# the project's .venv:
#   venv/    a venv with litellm[proxy] (pinned: newer releases' [proxy] extra pins companion packages
#            that take pip minutes to backtrack over) + aiohttp + uvloop, for LiteLLM and the fake upstream
#   wrk      the Debian package: the system's if installed; else `apt-get install wrk` when run as root;
#            else the .debs are downloaded and unpacked under tools/ (no system install)
set -euo pipefail
W=${BENCH_PEER_DIR:-$(dirname "$(mktemp -u)")/imagegen-bench-peer}; mkdir -p "$W"; cd "$W"
LITELLM_SPEC=${LITELLM_SPEC:-'litellm[proxy]==1.108.7'}
PYTHON=${PYTHON:-python3}
export PIP_CACHE_DIR="$W/.pipcache"
if [[ ! -x venv/bin/litellm ]]; then
  "$PYTHON" -m venv venv
  venv/bin/pip install -q "$LITELLM_SPEC" aiohttp uvloop
fi
LITELLM_LOCAL_MODEL_COST_MAP=True venv/bin/python -c 'import litellm, aiohttp; from importlib.metadata import version as v; print("litellm", v("litellm"), "aiohttp", v("aiohttp"))'
mkdir -p tools/bin
if command -v wrk >/dev/null 2>&1; then
  ln -sf "$(command -v wrk)" tools/bin/wrk
elif [[ ! -x tools/root/usr/bin/wrk ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    { apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; } \
      && ln -sf "$(command -v wrk)" tools/bin/wrk
  fi
  if [[ ! -x tools/bin/wrk ]]; then   # not root: unpack the .debs here
    fetch_debs() { (cd tools/debs && apt-get download -o Dir::Cache="$W/tools/aptcache" \
       wrk libluajit-5.1-2 libluajit-5.1-common); }
    mkdir -p tools/debs && { fetch_debs || { apt-get update -qq && fetch_debs; }; }
    for f in tools/debs/*.deb; do dpkg -x "$f" tools/root; done
    rm -rf tools/aptcache
  fi
fi
if [[ -x tools/root/usr/bin/wrk && ! -e tools/bin/wrk ]]; then
  cat > tools/bin/wrk <<'WRAP'
#!/bin/sh
# wrk unpacked from the Debian .deb (no system install)
D=$(cd "$(dirname "$0")/.." && pwd)
LD_LIBRARY_PATH="$D/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$D/root/usr/bin/wrk" "$@"
WRAP
  chmod +x tools/bin/wrk
fi
tools/bin/wrk --version 2>&1 | head -1 || true
echo "setup ok ($W)"
