#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting and lints first (fast), then every
# test of every crate, against a Kafka-protocol broker (tansu) that this script installs
# if needed, starts on a free port, and stops at the end, and with the incident pages
# driven in a headless Chromium (Debian's, installed if missing). Needs only the Rust
# toolchain, on a fresh machine too: installing tansu takes about 20 minutes once.
set -euo pipefail
cd "$(dirname "$0")/.."
features="logheal/kafka-tests,logheal/browser-tests"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked --features "$features" -- -D warnings
LOGHEAL_TEST_CHROMIUM="$(scripts/browser.sh path)"
export LOGHEAL_TEST_CHROMIUM
echo "test: chromium at $LOGHEAL_TEST_CHROMIUM"
LOGHEAL_TANSU="$(scripts/broker.sh path)"
export LOGHEAL_TANSU
trap 'scripts/broker.sh stop' EXIT
export "$(scripts/broker.sh start)"
echo "test: broker at $LOGHEAL_TEST_BROKERS"
cargo test --workspace --locked --features "$features"
