#!/usr/bin/env bash
# Leave-one-out check of the miner's default configuration on Loghub-2k: for each system,
# the configuration of a small grid that scores best on the other systems, scored on it
# (see scripts/loghub_loo.py). Needs ../shared beside the repository and Python 3.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
cargo build --release --quiet
exec python3 scripts/loghub_loo.py target/release/logheal "$shared" "$@"
