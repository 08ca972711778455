#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, then every test of every crate,
# against a Kafka-protocol broker (tansu) that this script installs if needed, starts on
# a free port, and stops at the end. Needs only the Rust toolchain, on a fresh machine
# too: installing tansu takes about 20 minutes once.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
LOGHEAL_TANSU="$(scripts/broker.sh path)"
export LOGHEAL_TANSU
cargo clippy --workspace --all-targets --locked --features logheal/kafka-tests -- -D warnings
trap 'scripts/broker.sh stop' EXIT
export "$(scripts/broker.sh start)"
echo "test: broker at $LOGHEAL_TEST_BROKERS"
cargo test --workspace --locked --features logheal/kafka-tests
