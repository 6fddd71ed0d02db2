#!/usr/bin/python3
"""Instructions per Do53 UDP cache hit, counted by callgrind inside
dv_core_submit (identity, policy, cache, the answer and its reply hook),
for one or two dnsveil binaries side by side (README "Performance",
"Per-group upstreams").

  hit_callgrind.py --dnsveil BIN [--baseline BIN] [--hits N] [--runs R]

One dnsveil (one worker, under `valgrind --tool=callgrind
--toggle-collect=dv_core_submit`) with the policy on: groups default and
kids, clients from 127.0.0.2 in kids.  Rows: a default-group client
(upstream set 0) and a kids client; for the binary under test the kids
group also has its own `upstream:` (a second Unbound), so its hits use a
set-1 cache key.  The baseline (e.g. a build of main, which has no
per-group upstreams) runs the kids rows without it.  Each run warms the
name up (50 queries), zeroes the counters (callgrind_control -z), asks
www.example.test A N times from dnspython and dumps (-d): Ir / N.  The
counts are instructions, not time, so the load of the machine does not
matter; they still move by about 1% from run to run (the hash seeds are
random), hence the median of R runs.  Nothing is pass/fail; every
process is ours, by PID, and stopped at the end.
"""

import argparse
import glob
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import dvtest as h  # noqa: E402

import dns.query  # noqa: E402


def run(binary, kids_upstream, source, hits):
    """Ir per hit of one run."""
    ub = h.Unbound(whoami="default", log_queries=False).start()
    ub2 = h.Unbound(whoami="kids", log_queries=False).start()
    out = tempfile.mkdtemp(prefix="dv-callgrind-")
    d = None
    try:
        kids = ('    upstream: ["%s"]\n' % ub2.url("tcp")) if kids_upstream else "    block: []\n"
        extra = ("groups:\n  default: {}\n  kids:\n%sclients:\n"
                 "  - { cidr: 127.0.0.2, group: kids }\n" % kids)
        os.environ["DNSVEIL"] = binary
        d = h.Dnsveil(listen=["udp"], upstream=[ub], config=h.base_config(), workers=1,
                      extra_yaml=extra, name="callgrind",
                      wrapper=["valgrind", "--tool=callgrind",
                               "--toggle-collect=dv_core_submit",
                               "--callgrind-out-file=%s/cg.%%p" % out])
        d.start()
        q = h.make_query("www.example.test", "A")
        for _ in range(50):
            dns.query.udp(q, "127.0.0.1", port=d.port, source=source, timeout=10)
        subprocess.run(["callgrind_control", "-z", str(d.proc.pid)], capture_output=True,
                       check=True, timeout=60)
        for _ in range(hits):
            dns.query.udp(q, "127.0.0.1", port=d.port, source=source, timeout=10)
        subprocess.run(["callgrind_control", "-d", str(d.proc.pid)], capture_output=True,
                       check=True, timeout=60)

        def dumped():
            for f in glob.glob(os.path.join(out, "cg.*")):
                with open(f) as fh:
                    m = re.search(r"^summary:\s*(\d+)", fh.read(), re.M)
                if m:
                    return int(m.group(1))
            return None
        ir = h.wait_for(dumped, 30, what="callgrind's dump")
        return ir / hits
    finally:
        if d is not None:
            d.stop()
            d.cleanup()
        ub.cleanup()
        ub2.cleanup()
        subprocess.run(["rm", "-rf", out])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dnsveil", required=True)
    ap.add_argument("--baseline")
    ap.add_argument("--hits", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    rows = []
    for label, binary, is_new in (("baseline", a.baseline, False), ("dnsveil", a.dnsveil, True)):
        if not binary:
            continue
        for group, source in (("default (set 0)", "127.0.0.1"),
                              ("kids (%s)" % ("own upstream: set 1" if is_new else "set 0"),
                               "127.0.0.2")):
            v = [run(binary, is_new and source == "127.0.0.2", source, a.hits)
                 for _ in range(a.runs)]
            rows.append((label, group, v))
            print("%s %s: %s" % (label, group, ", ".join("%.1f" % x for x in v)),
                  file=sys.stderr)
    print("| binary | client | Ir per hit (median of %d) | runs |" % a.runs)
    print("|---|---|---|---|")
    med = {}
    for label, group, v in rows:
        med[(label, group.split()[0])] = statistics.median(v)
        print("| %s | %s | %.0f | %s |" % (label, group, statistics.median(v),
                                           " ".join("%.0f" % x for x in v)))
    if a.baseline:
        for g in ("default", "kids"):
            print("\n%s: dnsveil / baseline = %.3f" % (g, med[("dnsveil", g)] /
                                                       med[("baseline", g)]))


if __name__ == "__main__":
    main()
