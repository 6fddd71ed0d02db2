#!/usr/bin/python3
"""dnsperf as a real client under moderate, rate-limited load: 10 clients
over UDP for 10 s and over TCP for 5 s, on the 1000 names h0..h999 (the
first round misses, the rest hits the cache).  No query may be lost and all
must be NOERROR.  This is a correctness-under-load test, not a benchmark
(tests/bench measures throughput)."""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

UDP_QPS = 1000 if h.SANITIZE else 5000
TCP_QPS = 500 if h.SANITIZE else 2000


class Dnsperf(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        self.dv = self.start_dnsveil(upstream=[self.ub], config=h.base_config())
        self.qfile = os.path.join(self.dv.dir, "queries.txt")
        with open(self.qfile, "w") as f:
            for i in range(h.NUM_HOSTS):
                f.write("h%d.example.test A\n" % i)

    def run_dnsperf(self, what, *opts, expect_qps):
        st0 = self.dv.stats()
        res, out = h.dnsperf(self.dv.port, self.qfile, *opts)
        st1 = self.dv.stats()
        log(out)
        log("%s: sent %s, completed %s, lost %s, %s qps, avg latency %s s" % (
            what, res.get("sent"), res.get("completed"), res.get("lost"), res.get("qps"),
            res.get("avg_latency")))
        self.assertEqual(res["rc"], 0, "dnsperf exited %s:\n%s" % (res["rc"], out))
        self.assertIn("lost", res, "no 'Queries lost:' in dnsperf output:\n%s" % out)
        self.assertGreater(res.get("completed", 0), 0, "no query completed:\n%s" % out)
        self.assertEqual(res["lost"], 0, "%s: %d queries lost" % (what, res["lost"]))
        self.assertEqual(res.get("noerror", 0), res["completed"],
                         "%s: not every answer NOERROR:\n%s" % (what, out))
        self.assertGreater(res.get("qps", 0), expect_qps * 0.5,
                           "%s: only %.0f qps of the %d asked for" % (what, res.get("qps", 0),
                                                                     expect_qps))
        delta = {k: st1[k] - st0[k] for k in ("queries", "answers", "cache_hits", "cache_misses",
                                              "upstream_queries", "servfail", "tcp_connections")}
        log("dnsveil stats delta: %s" % delta)
        self.assertGreaterEqual(delta["answers"], res["completed"], delta)
        self.assertEqual(delta["servfail"], 0, delta)
        self.assertGreater(delta["cache_hits"], res["completed"] // 2,
                           "the cache should answer most of the load: %s" % delta)
        return res, delta

    def test_udp(self):
        self.run_dnsperf("UDP", "-c", "10", "-l", "10", "-Q", str(UDP_QPS), "-t", "5",
                         expect_qps=UDP_QPS)
        log("ok: dnsperf UDP, 0 lost")
        self.assert_healthy(self.dv, "dnsperf UDP")

    def test_tcp(self):
        _, delta = self.run_dnsperf("TCP", "-m", "tcp", "-c", "10", "-l", "5", "-Q",
                                    str(TCP_QPS), "-t", "5", expect_qps=TCP_QPS)
        self.assertGreaterEqual(delta["tcp_connections"], 10, delta)
        log("ok: dnsperf TCP, 0 lost")
        self.assert_healthy(self.dv, "dnsperf TCP")


if __name__ == "__main__":
    h.main()
