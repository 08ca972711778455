#!/usr/bin/env bash
# Floods an input can bring, through `logheal replay` (release build): wall time and the
# process's own peak RSS (the summary's `peak_rss_bytes`), against the bounds the README
# states. Needs Python 3 for the generator. Usage: scripts/flood-bench.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/floods}
mkdir -p "$out"
cargo build --release --quiet
gen() { [ -s "$out/$1.jsonl" ] || python3 scripts/flood_gen.py "$2" "$3" "$out/$1.jsonl" "${@:4}"; }
gen services-100k services 100000
gen dense-503-3m traces 3000000 --step-us 10
gen templates-200k templates 200000
gen roots-3k roots 3000
gen storm-800k storm 800000 --step-us 10
printf '%-16s %10s %10s %12s  %s\n' flood lines wall_s peak_rss_MB outcome
for name in services-100k dense-503-3m templates-200k roots-3k storm-800k; do
  start=$(date +%s.%N)
  summary=$(target/release/logheal replay --output json "$out/$name.jsonl" 2>/dev/null | tail -1)
  end=$(date +%s.%N)
  python3 - "$name" "$start" "$end" "$summary" <<'PY'
import json, sys
name, start, end, s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
outcome = {
    "services-100k": f"services {s['services']}, over the cap {s['services_over_cap']}",
    "dense-503-3m": f"incidents {s['incidents']}",
    "templates-200k": f"templates {s['templates']}, families {s['families']}",
    "roots-3k": f"confirmed {s['confirmed']}, actions {s['actions']}, withheld {s['actions_withheld']}, brakes {s['brakes']}",
    "storm-800k": f"confirmed {s['confirmed']} (the cascade), storm-evicted {s['traces_storm_evicted']}",
}[name]
print(f"{name:<16} {s['lines']:>10} {end - start:>10.2f} {s['peak_rss_bytes'] / 2**20:>12.1f}  {outcome}")
PY
done
