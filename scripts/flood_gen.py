#!/usr/bin/env python3
"""Flood inputs for scripts/flood-bench.sh.

flood_gen.py MODE N OUT [--step-us US]; modes:
  services   every line a new service name (503, unique trace)
  traces     every line a new trace id, payment and checkout alternating (503)
  templates  one service, every message eight random words (a new template each)
  roots      N forged cascades, each naming a new root service (3 lines each)
  storm      a single-service 503 storm with unique trace ids, and one real cascade
             (payment, checkout, gateway 1.5 s apart) inside it
"""
import random
import sys
import uuid
from datetime import datetime, timedelta, timezone

mode, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
step_us = int(sys.argv[sys.argv.index("--step-us") + 1]) if "--step-us" in sys.argv else 1000
rng = random.Random(5)
t0 = datetime(2026, 3, 14, 10, 0, 0, tzinfo=timezone.utc)


def ts(i):
    return (t0 + timedelta(microseconds=i * step_us)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def line(t, service, trace, status=503, msg="POST /charge returned 503 after 12 ms", level="error"):
    return ('{"ts":"%s","service":"%s","trace_id":"%s","status":%d,"level":"%s","msg":"%s"}\n'
            % (t, service, trace, status, level, msg))


words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
         for _ in range(20000)]
with open(out, "w") as f:
    w = f.write
    if mode == "services":
        for i in range(n):
            w(line(ts(i), "svc-%s" % uuid.UUID(int=rng.getrandbits(128)), "%032x" % rng.getrandbits(128)))
    elif mode == "traces":
        for i in range(n):
            w(line(ts(i), "payment" if i % 2 == 0 else "checkout", "%032x" % rng.getrandbits(128),
                   msg="POST /charge: upstream connect error: connection refused"))
    elif mode == "templates":
        for i in range(n):
            w(line(ts(i), "payment", "%032x" % rng.getrandbits(128), status=200, level="info",
                   msg=" ".join(rng.choice(words) for _ in range(8))))
    elif mode == "roots":
        for i in range(n):
            tid = "%032x" % rng.getrandbits(128)
            for j, s in enumerate(("svc-%d" % i, "checkout", "gateway")):
                w(line(ts(3 * i + j), s, tid, msg="POST /x returned 503"))
    elif mode == "storm":
        hops = {int(2.0e6 / step_us): "payment", int(3.5e6 / step_us): "checkout",
                int(5.0e6 / step_us): "gateway"}
        for i in range(n):
            if i in hops:
                w(line(ts(i), hops[i], "realcascade"))
            w(line(ts(i), "redis-proxy", "%032x" % rng.getrandbits(128)))
    else:
        sys.exit("unknown mode " + mode)
