#!/usr/bin/env bash
# The end-to-end Kafka bench: starts a broker (scripts/broker.sh), runs
# `cargo bench --bench kafka` against it, stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
trap 'scripts/broker.sh stop' EXIT
export "$(scripts/broker.sh start)"
cargo bench --bench kafka
