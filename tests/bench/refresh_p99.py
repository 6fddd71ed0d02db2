#!/usr/bin/python3
"""Cache-hit latency while a 1,000,000-name list is refreshed (README
"Performance", "With a 1,000,000-name block list").

  refresh_p99.py --dnsveil BIN [--names N] [--seconds S] [--runs R] [--qps Q]

One dnsveil (one worker) with a hosts list of N names from a local HTTP
server (loopback) refreshed every second, one Unbound behind it, dnsperf
asking 1,000 cache-hit names (none blocked) at a fixed rate over UDP.  Each
run measures p50/p99 twice: "quiet" (the server answers 304: no parse, no
swap) and "refreshing" (every fetch gets a new body: the refresher parses
N names, builds a new set and swaps it in, again and again for the whole
run).  Prints a table; nothing is pass/fail.  Every process is ours, by
PID, and stopped at the end; every loop is bounded.
"""

import argparse
import hashlib
import http.server
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
import dvtest as h  # noqa: E402
from bench import parse_dnsperf, DNSPERF  # noqa: E402


class Server:
    """GET /list.txt: the body, with an ETag; 304 to a matching
    If-None-Match.  With `flip`, each 200 switches to the other body, so
    every refresh finds a new list."""

    def __init__(self, bodies):
        self.bodies = bodies
        self.cur = 0
        self.flip = False
        self.lock = threading.Lock()
        self.served = 0
        self.not_modified = 0
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                # the list server is no part of what is measured: it
                # yields to dnsveil's worker and to dnsperf
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
                with srv.lock:
                    if srv.flip and self.headers.get("If-None-Match"):
                        srv.cur ^= 1
                    body = srv.bodies[srv.cur]
                    etag = '"%d"' % srv.cur
                if self.headers.get("If-None-Match") == etag:
                    with srv.lock:
                        srv.not_modified += 1
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with srv.lock:
                    srv.served += 1

        class Quiet(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # dnsveil hung up (it stops at the end of the run)

        self.port = h.free_port()
        self.httpd = Quiet(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def loads(dv):
    st = dv.stats()
    return st["policy"]["lists"]["ads"]["loads"]


def run_dnsperf(port, queries, seconds, qps, tmp):
    out = os.path.join(tmp, "dnsperf.out")
    with open(out, "w") as f:
        subprocess.run([DNSPERF, "-m", "udp", "-s", "127.0.0.1", "-p", str(port), "-d", queries,
                        "-c", "1", "-q", "50", "-T", "1", "-t", "2", "-Q", str(qps),
                        "-l", str(seconds), "-v"],
                       stdout=f, stderr=subprocess.STDOUT, timeout=seconds + 30, check=False)
    return parse_dnsperf(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dnsveil", required=True)
    ap.add_argument("--names", type=int, default=1000000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--qps", type=int, default=5000)
    a = ap.parse_args()
    os.environ["DNSVEIL"] = os.path.abspath(a.dnsveil)
    tmp = tempfile.mkdtemp(prefix="dv-refresh-bench-")
    names = b"".join(b"0.0.0.0 n%07d.blocked.test\n" % i for i in range(a.names))
    bodies = [names + b"0.0.0.0 odd.blocked.test\n", names + b"0.0.0.0 even.blocked.test\n"]
    srv = Server(bodies)
    ub = h.Unbound(whoami="local", log_queries=False)
    dv = None
    try:
        ub.start()
        extra = """lists:
  ads: { source: "http://127.0.0.1:%d/list.txt", format: hosts, refresh-s: 1, max-bytes: 256M }
groups:
  default: { block: [ads] }
policy:
  cache-dir: %s
""" % (srv.port, os.path.join(tmp, "cache"))
        cfg = h.base_config()
        cfg["workers"] = 1
        dv = h.Dnsveil(upstream=[ub], config=cfg, extra_yaml=extra, name="refresh-bench")
        dv.start(timeout=60)
        queries = os.path.join(tmp, "q.txt")
        with open(queries, "w") as f:
            f.writelines("h%d.example.test A\n" % i for i in range(1000))
        subprocess.run([DNSPERF, "-s", "127.0.0.1", "-p", str(dv.port), "-d", queries, "-n", "1",
                        "-l", "30"], capture_output=True, timeout=60, check=False)
        m = re.search(r"loaded in (\d+) ms", h.read_text(dv.stderr_path))
        print("list: %d names (%.1f MiB of text), loaded at start in %s ms; RSS %.1f MiB" % (
            a.names + 1, len(bodies[0]) / 2**20, m.group(1) if m else "?", dv.rss_kb() / 1024))
        rows = []
        for run in range(a.runs):
            for mode in ("quiet", "refreshing"):
                with srv.lock:
                    srv.flip = mode == "refreshing"
                    n304 = srv.not_modified
                if mode == "quiet":  # the last rebuild done: 304s again
                    h.wait_for(lambda: srv.not_modified >= n304 + 2, 120, what="quiet")
                else:  # the first rebuild under way
                    n = loads(dv)
                    h.wait_for(lambda: loads(dv) > n, 120, what="a rebuild")
                before = loads(dv)
                t0 = time.monotonic()
                res = run_dnsperf(dv.port, queries, a.seconds, a.qps, tmp)
                secs = time.monotonic() - t0
                swaps = loads(dv) - before
                rows.append((run + 1, mode, res, swaps, secs, dv.rss_kb() / 1024))
                print("run %d %-10s  answers/s %8.0f  p50 %.3f ms  p99 %.3f ms  lost %d  "
                      "errors %d  swaps %d in %.1f s  RSS %.1f MiB" % (
                          run + 1, mode, res.qps or 0, res.p50_ms or 0, res.p99_ms or 0,
                          res.lost or 0, res.errors or 0, swaps, secs, rows[-1][5]),
                      flush=True)
        built = re.findall(r"built in (\d+) ms and swapped in", h.read_text(dv.stderr_path))
        if built:
            b = sorted(int(x) for x in built)
            print("refresh builds: %d, %d..%d ms (median %d ms)" % (
                len(b), b[0], b[-1], b[len(b) // 2]))
        for mode in ("quiet", "refreshing"):
            p99 = sorted(r[2].p99_ms for r in rows if r[1] == mode and r[2].p99_ms)
            if p99:
                print("%s p99: %s ms (median %.3f)" % (
                    mode, ", ".join("%.3f" % x for x in p99), p99[len(p99) // 2]))
    finally:
        if dv:
            dv.stop()
            dv.cleanup()
        ub.stop()
        srv.stop()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
