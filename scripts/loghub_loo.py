#!/usr/bin/env python3
"""Leave-one-out check of the miner's one default configuration on Loghub-2k.

Usage: scripts/loghub-loo.sh   (builds logheal, runs this)
       loghub_loo.py LOGHEAL_BIN SHARED_DIR

A setting chosen because it scores best on the systems it was developed on can fit those
systems and no other. To see whether the default generalises, this mines every system
with every configuration of a small grid (`logheal templates --miner KEY=VALUE`), then,
for each system in turn, picks the configuration with the best average GA on the *other*
systems and scores it on the one held out. It prints:

- per held-out system: the configuration chosen without it, its GA on the held-out
  system, and the default's GA there;
- the average held-out GA (what a configuration chosen this way is expected to score on
  a system nobody tuned for), next to the default's average;
- where the default ranks on the full set, and the configurations that beat it.

GA is Loghub's grouping accuracy (as in SHARED_DIR/tools/loghub_eval.py): a line is
correct when its predicted group holds exactly the lines of its ground-truth group.
"""
import csv
import itertools
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict

GRID = {
    "similarity": ["0.4", "0.5", "0.6", "0.7"],
    "prefix_depth": ["1", "2"],
    "settle_after": ["1", "4", "16"],
    "siblings_to_merge": ["3", "4", "6"],
}
DEFAULT = {"similarity": "0.5", "prefix_depth": "2", "settle_after": "1", "siblings_to_merge": "4"}


def formats(shared):
    text = open(os.path.join(shared, "data/loghub-2k/FORMATS.md"), encoding="utf-8").read()
    return {m.group(1): m.group(2)
            for m in re.finditer(r"^\| (\w+) \| `(.+?)` \| [\d.]+ \| \d+ \|$", text, re.M)}


def truth_groups(path):
    groups = {}
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        for r in csv.DictReader(f):
            groups[int(r["LineId"])] = r["EventId"]
    return groups


def grouping_accuracy(truth, predicted):
    t_groups, p_groups = defaultdict(set), defaultdict(set)
    for line, event in truth.items():
        t_groups[event].add(line)
    for line in truth:
        if line in predicted:
            p_groups[predicted[line]].add(line)
    correct = 0
    for lines in p_groups.values():
        events = {truth[k] for k in lines}
        if len(events) == 1 and t_groups[next(iter(events))] == lines:
            correct += len(lines)
    return correct / len(truth)


def mine(binary, raw, fmt, config, out):
    cmd = [binary, "templates", raw, "--format", fmt, "--csv", out]
    for key, value in config.items():
        cmd += ["--miner", f"{key}={value}"]
    subprocess.run(cmd, capture_output=True, check=True)
    with open(out, newline="", encoding="utf-8") as f:
        return {int(r["line"]): r["template_id"] for r in csv.DictReader(f)}


def label(config):
    return " ".join(f"{k}={v}" for k, v in config.items())


def main():
    binary, shared = sys.argv[1], sys.argv[2]
    data = os.path.join(shared, "data/loghub-2k")
    systems = {name: fmt for name, fmt in sorted(formats(shared).items())
               if os.path.exists(os.path.join(data, name, f"{name}_2k.log"))}
    configs = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
    scratch = tempfile.TemporaryDirectory(prefix="loghub-loo-")  # removed at exit
    tmp = scratch.name
    ga = {}  # (config index, system) -> GA
    for name, fmt in systems.items():
        raw = os.path.join(data, name, f"{name}_2k.log")
        truth = truth_groups(os.path.join(data, name, f"{name}_2k.log_structured_corrected.csv"))
        for i, config in enumerate(configs):
            ga[i, name] = grouping_accuracy(truth, mine(binary, raw, fmt, config, os.path.join(tmp, "out.csv")))
    default = configs.index(DEFAULT)
    mean = lambda i, names: sum(ga[i, n] for n in names) / len(names)
    print(f"{len(configs)} configurations x {len(systems)} systems\n")
    print(f"{'held out':<10} {'chosen on the other systems':<62} {'GA':>6} {'default':>8}")
    held = []
    for name in systems:
        others = [n for n in systems if n != name]
        # Ties go to the default, then to the grid's order.
        best = max(range(len(configs)), key=lambda i: (round(mean(i, others), 6), i == default, -i))
        held.append(ga[best, name])
        print(f"{name:<10} {label(configs[best]):<62} {ga[best, name]:>6.4f} {ga[default, name]:>8.4f}")
    names = list(systems)
    print(f"\naverage held-out GA: {sum(held) / len(held):.4f} (lowest {min(held):.4f}); "
          f"the default's average: {mean(default, names):.4f} (lowest {min(ga[default, n] for n in names):.4f})")
    ranked = sorted(range(len(configs)), key=lambda i: -mean(i, names))
    print(f"the default ranks {ranked.index(default) + 1} of {len(configs)} on all {len(names)} systems")
    for i in ranked[:5]:
        print(f"  {mean(i, names):.4f} (lowest {min(ga[i, n] for n in names):.4f})  {label(configs[i])}")


if __name__ == "__main__":
    main()
