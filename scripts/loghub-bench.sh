#!/usr/bin/env bash
# Template mining on Loghub-2k: logheal (one default configuration) next to Drain3
# (generic and per-dataset tuned), GA/PA per dataset, and mining throughput on 1M lines.
# Needs ../shared beside the repository and Python 3 (drain3 goes into target/bench-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
cargo build --release --quiet
if [ ! -x target/bench-venv/bin/python ]; then
  python3 -m venv target/bench-venv
  target/bench-venv/bin/pip install --quiet drain3
fi
exec target/bench-venv/bin/python scripts/loghub_bench.py target/release/logheal "$shared" "$@"
