#!/usr/bin/env bash
# Detection on ../shared/data/trainticket with the built-in rules: each day replayed as one
# stream, per fault window detected or not, seconds to CONFIRMED, top-3 root candidates,
# log-visible or not (from the logs alone), and confirmations in the fault-free minute.
# Options go to scripts/trainticket_eval.py: --shape vector|filebeat|otlp (rendered with
# ../shared/tools/trainticket_shapes.py), --rules PATH, --markdown, --placements (each
# log-visible window moved into a gap of its day, the day replayed again), --lead-in (each
# fault window put before the fault-free minute's day: that minute then past the warm-up).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
cargo build --release --quiet
exec python3 scripts/trainticket_eval.py target/release/logheal "$shared/data/trainticket" \
  --tools "$shared/tools" "$@"
