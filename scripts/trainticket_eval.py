#!/usr/bin/env python3
"""Detection on the TrainTicket fault windows, as a job running all day would see them.

trainticket_eval.py LOGHEAL DATA_DIR [--shape fluentbit|vector|filebeat|otlp] [--tools DIR]
                    [--rules PATH] [--markdown] [--placements]

Each day's windows are replayed as one stream, in time order (`zcat DAY*.jsonl.gz |
logheal replay -`), with the built-in rules (or --rules). Per fault window it prints:
whether an incident was confirmed after the injection and inside the window, the seconds
from the injection to that confirmation, the incident's top-3 root candidates and whether
the injected service is among them; the confirmations inside the fault-free minute; and a
"log-visible" verdict computed from the logs alone, independently of the detector: the
injected service or one of its callers (a service that logs in a trace before it) logs
warn/error lines after the injection at least 3 per minute and more than twice its rate
before the injection and in the fault-free minute. For a log-visible window it also gives
the seconds from the first anomalous line (that service's first warn/error line after the
injection) to the confirmation, the measure the detection target is stated in.

--placements moves each log-visible fault window, alone, into a gap of its day (its own
place left empty) and replays the day again: a proxy for fault windows this data set
leaves out, put in their places, which the thresholds were never looked at against.

--lead-in puts each fault window, alone, 15 minutes before the start of the day that has
the fault-free minute, and counts the confirmations inside that minute: the minute lies
inside the 10-minute warm-up of its day's stream as recorded, and past it here.
"""
import collections
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timezone

LEVEL = re.compile(r"^\S+\s+(TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL)\b")
TRACE = re.compile(r"TraceID:\s*([0-9a-fA-F]{16,32})")
# The levels a service logs its failures at.
LOUD = ("WARN", "WARNING", "ERROR", "FATAL")


def arg(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def ts(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def read_window(path):
    """(time, service, level, trace) of every line of a Fluent Bit-shaped window file,
    and the services named in warn/error lines: {(time, line's service, named service)}
    (a service name of the system that occurs in the line's text)."""
    out, texts = [], []
    with gzip.open(path, "rt") as f:
        for line in f:
            r = json.loads(line)
            log = r.get("log", "")
            m = LEVEL.match(log)
            t = TRACE.search(log)
            out.append((
                ts(r["time"]),
                r.get("kubernetes", {}).get("labels", {}).get("app", "?"),
                m.group(1) if m else "",
                t.group(1).lower() if t else None,
            ))
            if out[-1][2] in LOUD:
                texts.append((out[-1][0], out[-1][1], log))
    services = {s for (_, s, _, _) in out}
    named = {(t, s, n) for (t, s, log) in texts for n in services if n != s and n in log}
    return out, named


def in_the_logs(lines, named, inject, injected):
    """Whether the logs point at the injected service at all after the injection: it
    logs warn/error lines itself, or another service's warn/error line names it. No
    ranking can put a service the logs never point at first; this bounds the top-3."""
    own = any(t >= inject and s == injected and lvl in LOUD
              for (t, s, lvl, _) in lines)
    return own or any(t >= inject and n == injected for (t, _, n) in named)


def rates(lines, lo, hi, services=None):
    minutes = max((hi - lo) / 60.0, 1 / 60)
    counts = collections.Counter(
        s for (t, s, lvl, _) in lines
        if lo <= t < hi and lvl in LOUD
        and (services is None or s in services))
    return {s: n / minutes for s, n in counts.items()}


def visible(lines, inject, injected, nofault):
    start, end = lines[0][0], lines[-1][0]
    # Its callers: services that log in a trace before the injected service does.
    first_in = {}
    for (t, s, _, tr) in lines:
        if tr and s == injected and tr not in first_in:
            first_in[tr] = t
    callers = {s for (t, s, _, tr) in lines if tr in first_in and t < first_in[tr] and s != injected}
    related = callers | {injected}
    before = rates(lines, start, inject, related)
    after = rates(lines, inject, end, related)
    best = None
    for s in related:
        a = after.get(s, 0.0)
        base = max(before.get(s, 0.0), nofault.get(s, 0.0))
        if a >= 3 and a > 2 * base:
            if best is None or a - base > best[1]:
                best = (s, a - base)
    return best


def shifted_copy(path, delta, out_path):
    """A Fluent Bit-shaped window file with its envelope times moved by `delta` seconds
    (the app's own header carries only a time of day, which logheal does not use)."""
    with gzip.open(path, "rt") as f, open(out_path, "w") as out:
        for line in f:
            r = json.loads(line)
            t = ts(r["time"]) + delta
            r["time"] = datetime.fromtimestamp(t, timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S.%f") + "Z"
            r["@timestamp"] = r["@timestamp"] + delta
            out.write(json.dumps(r) + "\n")


def replay_day(logheal, paths, shape, tools, rules, config, shifts=None):
    """`logheal replay` of `paths` as one stream, in the order given, rendered in `shape`;
    `shifts` moves some of them in time (path: seconds). Its output records."""
    shifts = shifts or {}
    with tempfile.TemporaryDirectory() as tmp:
        stream = os.path.join(tmp, "day.jsonl")
        with open(stream, "wb") as out:
            for path in paths:
                if path in shifts:
                    moved = os.path.join(tmp, "moved.jsonl")
                    shifted_copy(path, shifts[path], moved)
                    path = moved
                if shape == "fluentbit":
                    opener = gzip.open if path.endswith(".gz") else open
                    with opener(path, "rb") as f:
                        out.write(f.read())
                else:
                    shaped = os.path.join(tmp, "shaped.jsonl")
                    subprocess.run(
                        [sys.executable, os.path.join(tools, "trainticket_shapes.py"),
                         shape, shaped, path], check=True, capture_output=True)
                    with open(shaped, "rb") as f:
                        out.write(f.read())
        cmd = [logheal, "replay", "--output", "json", stream]
        if rules:
            cmd += ["--rules", rules]
        if config:
            cmd += ["--config", config]
        run = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return [json.loads(l) for l in run.stdout.splitlines()]


def confirmations(records):
    confirmed = [r for r in records if r.get("type") == "transition" and r.get("to") == "CONFIRMED"]
    for r in confirmed:
        r["t"] = ts(r["at"])
    return confirmed


def judge(fault, lines, named, confirmed, nofault, delta=0.0):
    """One fault window's row: `lines` as recorded, the window moved by `delta` seconds in
    the stream that gave `confirmed`."""
    inject = ts(fault["inject_time"])
    start, end = lines[0][0], lines[-1][0]
    # A window starts about a minute before its injection, and the logs show some
    # faults' effects up to 70 s before the recorded injection time: a confirmation
    # anywhere in the window counts (before the injection: negative seconds).
    hits = sorted((r for r in confirmed if start + delta <= r["t"] <= end + delta),
                  key=lambda r: r["t"])
    seen = visible(lines, inject, fault["service"], nofault)
    top = []
    if hits:
        first = hits[0]
        top = [c["service"] for c in first.get("candidates", [])][:3] or \
            [first.get("key", {}).get("root_service", "?")]
    in_top = any(fault["service"] in c for c in top)
    # Any incident confirmed in the window, not only the first: an SRE paged during the
    # window sees them all.
    in_any = any(fault["service"] in c["service"]
                 for r in hits for c in r.get("candidates", [])[:3])
    # The first anomalous line: the log-visible service's first warn/error line after
    # the injection.
    first_loud = min((t for (t, s, lvl, _) in lines
                      if seen and s == seen[0] and lvl in LOUD and t >= inject),
                     default=None)
    return {
        "window": fault["log"][:15], "service": fault["service"], "type": fault["type"],
        "visible": seen is not None, "visible_by": seen[0] if seen else "",
        "detected": bool(hits),
        "seconds": round(hits[0]["t"] - delta - inject, 1) if hits else None,
        "from_first": round(hits[0]["t"] - delta - first_loud, 1)
        if hits and first_loud is not None else None,
        "rule": hits[0]["rule"] if hits else "", "top3": top, "in_top3": in_top,
        "in_any_top3": in_any,
        "pointed": in_the_logs(lines, named, inject, fault["service"]),
    }


def placements(logheal, data, files, windows, read, faults, nofault, nf, opts):
    """Each log-visible fault window moved, alone, into the middle of a gap of its day
    between two other windows (the first gap after it, else the last before it), its
    original place left empty, and the day replayed: a proxy for other fault windows put
    in the places this data set leaves out. Per placement: detected in the moved window
    or not, seconds from its first anomalous line, top 3; and the confirmations inside
    the fault-free minute over all placements."""
    by_file = {f["log"] + ".gz": f for f in faults}
    rows, false_alarms = [], 0
    for f in files:
        fault = by_file.get(f)
        if fault is None:
            continue
        lines = windows[f]
        if visible(lines, ts(fault["inject_time"]), fault["service"], nofault) is None:
            continue
        day = [g for g in files if g[:10] == f[:10]]
        span = {g: (windows[g][0][0], windows[g][-1][0]) for g in day}
        others = sorted((span[g] for g in day if g != f))
        length = span[f][1] - span[f][0]
        gaps = [(a[1], b[0]) for a, b in zip(others, others[1:]) if b[0] - a[1] > length + 120]
        later = [g for g in gaps if g[0] >= span[f][1]]
        earlier = [g for g in gaps if g[1] <= span[f][0]]
        gap = later[0] if later else (earlier[-1] if earlier else None)
        if gap is None:
            continue
        new_start = gap[0] + (gap[1] - gap[0] - length) / 2
        delta = new_start - span[f][0]
        order = sorted(day, key=lambda g: span[g][0] + (delta if g == f else 0))
        paths = [os.path.join(data, g) for g in order]
        records = replay_day(logheal, paths, *opts,
                             shifts={os.path.join(data, f): delta})
        confirmed = confirmations(records)
        row = judge(fault, lines, read[f][1], confirmed, nofault, delta)
        row["moved"] = round(delta / 60)
        rows.append(row)
        if f[:10] == nf_day(files):
            false_alarms += sum(1 for r in confirmed if nf[0][0] <= r["t"] <= nf[-1][0])
    for r in rows:
        print("  ".join([r["window"], r["service"], r["type"], f"moved {r['moved']:+d} min",
                         "detected" if r["detected"] else "missed",
                         "" if r["from_first"] is None else f"{r['from_first']} s from the first anomalous line",
                         ", ".join(r["top3"]), "in top 3" if r["in_top3"] else ""]))
    det = [r for r in rows if r["detected"]]
    prompt = [r for r in det if r["from_first"] is None or r["from_first"] <= 60]
    print()
    print(f"placements: {len(rows)} log-visible windows moved; detected {len(det)} of {len(rows)}"
          f" ({100 * len(det) / max(len(rows), 1):.0f} %), {len(prompt)} within 60 s of the"
          f" first anomalous line; injected service in the top 3:"
          f" {len([r for r in det if r['in_top3']])} of {len(det)}")
    print(f"confirmations in the fault-free minute over the placements of its day: {false_alarms}")


def lead_in(logheal, data, files, windows, faults, nf, opts, lead=15 * 60):
    """Each fault window, alone, put before the start of the fault-free minute's day (it
    starts `lead` seconds before the day's first line), and the day replayed: the
    fault-free minute then lies past the warm-up, as it would in a stream that began
    earlier. Per window: the confirmations inside the fault-free minute."""
    day = [g for g in files if g[:10] == nf_day(files)]
    first = windows[day[0]][0][0]
    by_file = {f["log"] + ".gz": f for f in faults}
    with_alarms = 0
    for f in files:
        if f not in by_file:
            continue
        delta = first - lead - windows[f][0][0]
        paths = [os.path.join(data, g) for g in [f] + [g for g in day if g != f]]
        confirmed = confirmations(replay_day(logheal, paths, *opts,
                                             shifts={os.path.join(data, f): delta}))
        inside = [r for r in confirmed if nf[0][0] <= r["t"] <= nf[-1][0]]
        with_alarms += bool(inside)
        print("  ".join([f[:15], "before the day", f"{len(inside)} in the fault-free minute"]
                        + [f"{r['rule']} {r['at'][11:19]} {r['key']}" for r in inside]))
    print()
    print(f"lead-in: {with_alarms} of {len(by_file)} windows put before the day give a"
          f" confirmation in the fault-free minute")


def nf_day(files):
    return next(f for f in files if "no-fault" in f)[:10]


def main():
    logheal, data = sys.argv[1], sys.argv[2]
    shape = arg("--shape", "fluentbit")
    tools = arg("--tools", os.path.join(data, "..", "..", "tools"))
    rules = arg("--rules")
    config = arg("--config")
    opts = (shape, tools, rules, config)
    faults = json.load(open(os.path.join(data, "faults.json")))
    files = sorted(f for f in os.listdir(data) if f.endswith(".jsonl.gz"))
    read = {f: read_window(os.path.join(data, f)) for f in files}
    windows = {f: lines for f, (lines, _) in read.items()}
    nofault_file = next(f for f in files if "no-fault" in f)
    nf = windows[nofault_file]
    nofault = rates(nf, nf[0][0], nf[-1][0])
    if "--placements" in sys.argv:
        return placements(logheal, data, files, windows, read, faults, nofault, nf, opts)
    if "--lead-in" in sys.argv:
        return lead_in(logheal, data, files, windows, faults, nf, opts)
    days = sorted({f[:10] for f in files})
    records = []
    for day in days:
        day_files = [os.path.join(data, f) for f in files if f.startswith(day)]
        records += replay_day(logheal, day_files, *opts)
    confirmed = confirmations(records)
    rows = [judge(fault, windows[fault["log"] + ".gz"], read[fault["log"] + ".gz"][1],
                  confirmed, nofault) for fault in faults]
    nf_start, nf_end = nf[0][0], nf[-1][0]
    false_alarms = [r for r in confirmed if nf_start <= r["t"] <= nf_end]
    md = "--markdown" in sys.argv
    if md:
        print("| window | injected | fault | log-visible | detected | s | s from first anomalous line | rule | top-3 candidates | in top-3 | logs point at it |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [r["window"], r["service"], r["type"],
                 ("yes (" + r["visible_by"] + ")") if r["visible"] else "no",
                 "yes" if r["detected"] else "no",
                 "" if r["seconds"] is None else str(r["seconds"]),
                 "" if r["from_first"] is None else str(r["from_first"]), r["rule"],
                 ", ".join(r["top3"]), "yes" if r["in_top3"] else ("" if not r["detected"] else "no"),
                 "yes" if r["pointed"] else "no"]
        print(("| " + " | ".join(cells) + " |") if md else "  ".join(cells))
    vis = [r for r in rows if r["visible"]]
    det = [r for r in vis if r["detected"]]
    fast = [r for r in det if r["seconds"] is not None and r["seconds"] <= 60]
    # Within 60 s of the first anomalous line (a confirmation before it counts too).
    prompt = [r for r in det if r["from_first"] is None or r["from_first"] <= 60]
    top3 = [r for r in det if r["in_top3"]]
    invisible_detected = [r for r in rows if not r["visible"] and r["detected"]]
    print()
    print(f"log-visible windows: {len(vis)} of {len(rows)}")
    print(f"detected: {len(det)} of {len(vis)} log-visible"
          f" ({100 * len(det) / max(len(vis), 1):.0f} %), {len(fast)} within 60 s of the"
          f" injection, {len(prompt)} within 60 s of the first anomalous line;"
          f" also {len(invisible_detected)} of {len(rows) - len(vis)} not log-visible")
    print(f"injected service in the top 3: {len(top3)} of {len(det)} detected"
          f" ({100 * len(top3) / max(len(det), 1):.0f} %), {len(top3)} of {len(vis)}"
          f" log-visible ({100 * len(top3) / max(len(vis), 1):.0f} %)")
    pointed = [r for r in det if r["pointed"]]
    print(f"  the logs point at it (its own warn/error lines, or named in one) after the"
          f" injection in {len(pointed)} of those {len(det)}; in the top 3:"
          f" {len([r for r in pointed if r['in_top3']])} of {len(pointed)}")
    any_top3 = [r for r in det if r["in_any_top3"]]
    print(f"  in the top 3 of any incident confirmed in the window (not only the first):"
          f" {len(any_top3)} of {len(det)} detected, of {len(vis)} log-visible")
    print(f"confirmations in the fault-free minute: {len(false_alarms)}")
    print(f"confirmations in all: {len(confirmed)}")


if __name__ == "__main__":
    main()
