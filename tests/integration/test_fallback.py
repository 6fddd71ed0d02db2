#!/usr/bin/python3
"""Local upstream and fallback: answers come from the local Unbound; when it
is killed the fallback answers within the client's timeout; when it is back,
traffic returns to it; with both dead: SERVFAIL with an Extended DNS Error
and the process lives on.  A slow local answer is hedged to the fallback.
And the availability target: killing the local resolver under a load of
unique names loses no query and causes no SERVFAIL.

Each Unbound serves `*.whoami.example.test TXT` saying "local" or
"fallback", so every query can use a fresh, uncacheable name."""

import os
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import kdig, log  # noqa: E402

import dns.exception  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

CLIENT_TIMEOUT = h.scaled(5.0)


class Fallback(h.WhoamiChecks, h.IntegrationTest):

    whoami_n = 5

    def test_failover_and_recovery(self):
        local = self.start_resolver(whoami="local")
        fb = self.start_resolver(whoami="fallback")
        d = self.start_dnsveil(upstream=[local], fallback=[fb], config=h.pool_config())

        self.assert_whoami(d, "local", what="with both up")
        r = kdig(d.port, h.unique_label("k") + ".whoami.example.test", "TXT")
        self.assertIn('"local"', r.records()[0][3] if r.records() else "", "kdig: %r" % r)

        st0 = d.stats()
        local.kill()
        log("killed the local Unbound (pid %d)" % local.proc.pid)
        worst = 0.0
        for i in range(6):
            try:
                m, dt = self.whoami_timed(d, tcp=bool(i % 2))
            except dns.exception.Timeout:
                self.fail("query %d after killing the local upstream timed out (%.1fs)" % (
                    i, CLIENT_TIMEOUT))
            worst = max(worst, dt)
            self.assertEqual(m.rcode(), dns.rcode.NOERROR,
                             "query %d with local dead: %s" % (i, dns.rcode.to_text(m.rcode())))
            self.assertEqual(h.txt_value(m), "fallback", "query %d with local dead answered "
                             "by %r" % (i, h.txt_value(m)))
        log("ok: with local dead, 6 queries answered by the fallback (slowest %.3fs)" % worst)
        r = kdig(d.port, h.unique_label("k") + ".whoami.example.test", "TXT", tcp=True)
        self.assertEqual(r.status, "NOERROR", "kdig with local dead: %r" % r)
        self.assertIn('"fallback"', r.records()[0][3], "kdig with local dead: %r" % r)
        st1 = d.stats()
        self.assertGreater(st1["fallback_queries"], st0["fallback_queries"],
                           "fallback_queries did not grow: %s" % st1)

        local.start()
        log("restarted the local Unbound on port %d" % local.port)
        t0 = time.monotonic()

        def back_to_local():
            m, _ = self.whoami_timed(d)
            return h.txt_value(m) == "local"
        h.wait_for(back_to_local, h.scaled(20), interval=0.2,
                   what="answers to come from the restarted local Unbound again")
        log("traffic returned to local %.2fs after its restart" % (time.monotonic() - t0))
        self.assert_whoami(d, "local", n=6, what="after the local upstream came back")

        # both dead: SERVFAIL with EDE, quickly enough, and no crash
        local.kill()
        fb.kill()
        log("killed both Unbounds")
        t0 = time.monotonic()
        for edns in (0, None):
            name = h.unique_label("dead") + ".whoami.example.test"
            q = h.make_query(name, "TXT", edns=edns)
            try:
                m = dns.query.udp(q, "127.0.0.1", port=d.port, timeout=h.scaled(10))
            except dns.exception.Timeout:
                self.fail("no answer at all with every upstream dead (EDNS %s)" % edns)
            self.assertEqual(m.rcode(), dns.rcode.SERVFAIL,
                             "with every upstream dead: %s" % dns.rcode.to_text(m.rcode()))
            if edns is not None:
                codes = h.ede_codes(m)
                self.assertTrue(codes, "SERVFAIL to an EDNS query without an Extended DNS "
                                "Error option (15): options %s" % (m.options,))
                log("ok: SERVFAIL with EDE %s after %.2fs" % (codes, time.monotonic() - t0))
            else:
                self.assertEqual(m.edns, -1, "OPT in the answer to a query without EDNS")
                log("ok: SERVFAIL without OPT to a query without EDNS")
            t0 = time.monotonic()
        r = kdig(d.port, h.unique_label("k") + ".whoami.example.test", "TXT", "+edns",
                 timeout=h.scaled(10))
        self.assertEqual(r.status, "SERVFAIL", "kdig with all dead: %r" % r)
        self.assertTrue(d.alive(), "dnsveil died with every upstream dead")
        st2 = d.stats()
        self.assertGreater(st2["servfail"], st1["servfail"], "servfail not counted: %s" % st2)
        self.assertGreater(st2["upstream_failures"], st0["upstream_failures"], st2)
        log("ok: process alive; servfail=%d upstream_failures=%d" % (
            st2["servfail"], st2["upstream_failures"]))

        # and it recovers when an upstream comes back
        fb.start()
        h.wait_for(lambda: h.txt_value(self.whoami_timed(d)[0]) == "fallback", h.scaled(20),
                   interval=0.2, what="answers from the restarted fallback")
        log("ok: recovered with only the fallback restarted")

    def test_hedge_to_fallback_when_local_slow(self):
        """The local Unbound needs 1 s for *.slow.example.test; the fallback
        answers it at once: after hedge-delay-ms the fallback's answer wins."""
        slow_local = self.start_slow(delay=1.5)
        fast_fb = self.start_slow(delay=0.0, address="192.0.2.201")
        local = self.start_resolver(whoami="local", slow=slow_local)
        fb = self.start_resolver(whoami="fallback", slow=fast_fb)
        d = self.start_dnsveil(upstream=[local], fallback=[fb], config=h.pool_config(
            **{"hedge-delay-ms": 200, "timeout-ms": 3000, "query-timeout-ms": 5000}))
        st0 = d.stats()
        for i in range(3):
            name = "%s-%d.slow.example.test" % (h.unique_label("hedge"), i)
            t0 = time.monotonic()
            m = h.udp_query(d.port, name, timeout=h.scaled(5))
            dt = time.monotonic() - t0
            self.assertEqual([x[3] for x in h.rrset_texts(m)], ["192.0.2.201"],
                             "hedged answer should come from the fallback: %s" % m)
            self.assertLess(dt, 1.2, "hedging took %.3fs (hedge delay 0.2s, local needs 1.5s)"
                            % dt)
            log("ok: slow local name answered by the fallback in %.3fs" % dt)
        st1 = d.stats()
        self.assertGreaterEqual(st1["fallback_queries"] - st0["fallback_queries"], 3, st1)
        # fast local names are never hedged
        st0 = st1
        self.assert_whoami(d, "local", n=10, what="(fast local answers, no hedge)")
        st1 = d.stats()
        self.assertEqual(st1["fallback_queries"], st0["fallback_queries"],
                         "fast local answers were hedged to the fallback: %s" % st1)

    def test_no_loss_when_local_killed_under_load(self):
        """TARGETS.md availability: with the local resolver killed for a few
        seconds under a load of unique names, no query is lost and none gets
        SERVFAIL."""
        local = self.start_resolver(whoami="local")
        fb = self.start_resolver(whoami="fallback")
        d = self.start_dnsveil(upstream=[local], fallback=[fb], config=h.pool_config())
        duration = 7.0
        nthreads = 2 if h.SANITIZE else 6
        stop = threading.Event()
        results = {"ok": 0, "local": 0, "fallback": 0, "timeout": 0, "bad": []}
        lock = threading.Lock()

        def client(k):
            i = 0
            while not stop.is_set():
                i += 1
                name = "%s-%d-%d.whoami.example.test" % (h.unique_label("load"), k, i)
                try:
                    m = h.udp_query(d.port, name, "TXT", timeout=CLIENT_TIMEOUT)
                except dns.exception.Timeout:
                    with lock:
                        results["timeout"] += 1
                    continue
                with lock:
                    if m.rcode() == dns.rcode.NOERROR and h.txt_value(m) in ("local", "fallback"):
                        results["ok"] += 1
                        results[h.txt_value(m)] += 1
                    else:
                        results["bad"].append((name, dns.rcode.to_text(m.rcode())))
        threads = [threading.Thread(target=client, args=(k,), daemon=True)
                   for k in range(nthreads)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        local.kill()
        log("killed local under load")
        time.sleep(3.0)
        local.start()
        log("restarted local under load")
        time.sleep(duration - 4.5)
        stop.set()
        for t in threads:
            t.join(CLIENT_TIMEOUT + 5)
        log("load results: %d answered (%d local, %d fallback), %d timed out, %d bad %s" % (
            results["ok"], results["local"], results["fallback"], results["timeout"],
            len(results["bad"]), results["bad"][:5]))
        self.assertGreater(results["ok"], 100, "too few queries completed")
        self.assertGreater(results["fallback"], 0, "the fallback never answered")
        self.assertEqual(results["timeout"], 0, "queries lost (client timeout %.0fs) while the "
                         "local resolver was down" % CLIENT_TIMEOUT)
        self.assertEqual(results["bad"], [], "SERVFAIL/wrong answers while the local resolver "
                         "was down")
        log("ok: no query lost, no SERVFAIL")


if __name__ == "__main__":
    h.main()
