#!/usr/bin/env bash
# Recognition rates on the TrainTicket logs (../shared/data/trainticket) in each shipper's
# shape: Fluent Bit as shipped, and Vector, Filebeat and the OTel Collector's otlp_json as
# re-rendered by ../shared/tools/trainticket_shapes.py. Prints one row per shape with the
# share of records where time, service, level and trace id were recognised
# (`logheal inspect`'s summary). Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/trainticket}
tools=${2:-../shared/tools}
cargo build --release --quiet
bin=target/release/logheal
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
files=("$data"/*.jsonl.gz)
zcat "${files[@]}" > "$tmp/fluentbit.jsonl"
for shape in vector filebeat otlp; do
    python3 "$tools/trainticket_shapes.py" "$shape" "$tmp/$shape.jsonl" "${files[@]}" >/dev/null
done
printf '| shape | records | time | service | level | trace id |\n|---|---|---|---|---|---|\n'
for shape in fluentbit vector filebeat otlp; do
    "$bin" inspect --show 0 "$tmp/$shape.jsonl" | awk -v shape="$shape" '
        /^recognised in/ { records = $3 }
        $1 == "time" { t = $3 } $1 == "service" { s = $3 } $1 == "level" { l = $3 }
        $1 == "trace_id" { tr = $3 }
        END { printf "| %s | %s | %s %% | %s %% | %s %% | %s %% |\n", shape, records, t, s, l, tr }'
done
