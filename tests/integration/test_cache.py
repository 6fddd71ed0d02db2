#!/usr/bin/python3
"""The shared cache: repeated questions do not reach Unbound again (its own
counters: unbound-control stats_noreset total.num.queries, and its query
log), TTLs age, negative answers are cached (RFC 2308), the cache is shared
by UDP and TCP and ignores letter case, and dnsveil counts cache_hits."""

import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import kdig, log  # noqa: E402

import dns.rcode  # noqa: E402

AGE = 2.2  # seconds between the two queries


class Cache(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        # for-downstream auth-zone: Unbound always answers TTL 300 / SOA 60,
        # so any lower TTL is dnsveil's own ageing
        self.ub = self.start_unbound(for_downstream=True)
        self.dv = self.start_dnsveil(upstream=[self.ub], config=h.base_config())

    def _ttl(self, kd, section="answer"):
        recs = kd.records(section)
        self.assertTrue(recs, "no %s records: %r" % (section, kd))
        return min(x[2] for x in recs)

    def test_positive_answer_cached(self):
        p = self.dv.port
        name = "h42.example.test"
        st0 = self.dv.stats()
        r1 = kdig(p, name, "A")
        self.assertEqual((r1.status, [x[3] for x in r1.records()]), ("NOERROR", [h.host_addr(42)]),
                         "first answer: %r" % r1)
        ttl1 = self._ttl(r1)
        time.sleep(0.3)  # let Unbound's log catch up
        n1 = self.ub.num_queries()
        by_name1 = self.ub.queries_for(name, "A")
        self.assertEqual(by_name1, 1, "Unbound should have seen %s once, saw %d" % (name, by_name1))
        log("first answer TTL %d; Unbound total.num.queries=%d" % (ttl1, n1))

        time.sleep(AGE)
        r2 = kdig(p, name, "A")
        self.assertEqual((r2.status, [x[3] for x in r2.records()]), ("NOERROR", [h.host_addr(42)]),
                         "second answer: %r" % r2)
        ttl2 = self._ttl(r2)
        # the same question over TCP and with other letter case: same cache entry
        r3 = kdig(p, name, "A", tcp=True)
        self.assertEqual([x[3] for x in r3.records()], [h.host_addr(42)], "TCP: %r" % r3)
        m4 = h.udp_query(p, "H42.Example.Test")
        self.assertEqual([x[3] for x in h.rrset_texts(m4)], [h.host_addr(42)], "mixed case: %s" % m4)
        self.assertEqual(m4.question[0].name.to_text(), "H42.Example.Test.")
        time.sleep(0.3)
        n2 = self.ub.num_queries()
        by_name2 = self.ub.queries_for(name, "A")
        log("second answer TTL %d after %.1fs; Unbound total.num.queries=%d" % (ttl2, AGE, n2))
        self.assertLess(ttl2, ttl1, "cached TTL did not decrease: first %d, %.1fs later %d" % (
            ttl1, AGE, ttl2))
        self.assertGreaterEqual(ttl2, ttl1 - AGE - 2, "cached TTL fell too fast: %d -> %d" % (
            ttl1, ttl2))
        self.assertEqual(by_name2, by_name1, "Unbound was asked %s again (%d -> %d times): not "
                         "answered from the cache" % (name, by_name1, by_name2))
        self.assertEqual(n2, n1, "Unbound's total.num.queries grew %d -> %d while dnsveil should "
                         "have answered from its cache" % (n1, n2))
        st1 = self.dv.stats()
        hits = st1["cache_hits"] - st0["cache_hits"]
        self.assertGreaterEqual(hits, 3, "cache_hits grew by %d, expected >= 3: %s" % (hits, st1))
        self.assertGreaterEqual(st1["cache_misses"] - st0["cache_misses"], 1, st1)
        log("ok: cache hit over UDP, TCP and other case; cache_hits +%d, misses +%d" % (
            hits, st1["cache_misses"] - st0["cache_misses"]))

    def test_types_are_separate(self):
        """An A entry does not answer AAAA, nor a CNAME chain's owner the target."""
        p = self.dv.port
        self.assertEqual([x[3] for x in h.rrset_texts(h.udp_query(p, "www.example.test", "A"))],
                         ["192.0.2.1"])
        m = h.udp_query(p, "www.example.test", "AAAA")
        self.assertEqual([(x[1], x[3]) for x in h.rrset_texts(m)], [("AAAA", "2001:db8::1")],
                         "AAAA after A: %s" % m)
        m = h.udp_query(p, "www.example.test", "MX")
        self.assertEqual((m.rcode(), m.answer), (dns.rcode.NOERROR, []), "MX NODATA: %s" % m)
        for _ in range(2):
            m = h.udp_query(p, "alias.example.test", "A")
            self.assertEqual([x[1] for x in h.rrset_texts(m)], ["CNAME", "CNAME", "A"],
                             "CNAME chain (cached or not): %s" % m)
        log("ok: A, AAAA, MX (NODATA) and the CNAME chain are cached separately")

    def test_negative_answer_cached(self):
        p = self.dv.port
        for name, rdtype, rcode in (("no-such-%d.example.test" % os.getpid(), "A", "NXDOMAIN"),
                                    ("mail.example.test", "AAAA", "NOERROR")):
            r1 = kdig(p, name, rdtype)
            self.assertEqual((r1.status, r1.records()), (rcode, []), "first negative: %r" % r1)
            soa1 = self._ttl(r1, "authority")
            self.assertLessEqual(soa1, 60, "negative SOA TTL should be min(SOA TTL, MINIMUM) "
                                 "= 60 or less: %r" % r1)
            time.sleep(0.3)
            n1 = self.ub.num_queries()
            q1 = self.ub.queries_for(name, rdtype)
            time.sleep(AGE)
            r2 = kdig(p, name, rdtype)
            self.assertEqual((r2.status, r2.records()), (rcode, []), "second negative: %r" % r2)
            soa2 = self._ttl(r2, "authority")
            time.sleep(0.3)
            n2 = self.ub.num_queries()
            q2 = self.ub.queries_for(name, rdtype)
            log("%s %s %s: SOA TTL %d then %d; Unbound queries %d -> %d" % (
                name, rdtype, rcode, soa1, soa2, n1, n2))
            self.assertEqual(q2, q1, "Unbound asked again for negative %s %s" % (name, rdtype))
            self.assertEqual(n2, n1, "Unbound total.num.queries grew %d -> %d for a cached "
                             "negative answer" % (n1, n2))
            self.assertLess(soa2, soa1, "negative answer's SOA TTL did not age: %d -> %d" % (
                soa1, soa2))
            log("ok: %s (%s %s) answered from the cache" % (rcode, name, rdtype))

    def test_stats_keys(self):
        st = self.dv.stats()
        for key in ("queries", "answers", "dropped_short", "dropped_response", "formerr",
                    "notimp", "servfail", "refused", "cache_hits", "cache_misses",
                    "upstream_queries", "upstream_answers", "upstream_failures",
                    "fallback_queries", "tcp_connections", "tcp_idle_closed",
                    "coalesced", "stale_served", "prefetches", "hedged", "fallback_degraded",
                    "explored"):
            self.assertIn(key, st, "stats line lacks %r: %s" % (key, st))
            self.assertIsInstance(st[key], int, "stats %r is not an integer: %s" % (key, st))
        # one entry per upstream server
        ups = st.get("upstreams")
        self.assertIsInstance(ups, list, "stats line lacks the upstreams array: %s" % st)
        self.assertEqual([u["url"] for u in ups], [self.ub.url()], ups)
        for key in ("queries", "answers", "won", "failures", "timeouts", "probes",
                    "latency_p95_ms"):
            self.assertIsInstance(ups[0].get(key), int, "upstream %r: %s" % (key, ups[0]))
        self.assertIn(ups[0]["state"], ("up", "degraded", "down"), ups[0])
        self.assertIsInstance(ups[0]["latency_ewma_ms"], float, ups[0])
        for i in range(5):
            h.udp_query(self.dv.port, "h%d.example.test" % i)
            h.udp_query(self.dv.port, "h%d.example.test" % i)
        st2 = self.dv.stats()
        self.assertGreaterEqual(st2["queries"] - st["queries"], 10, st2)
        self.assertGreaterEqual(st2["answers"] - st["answers"], 10, st2)
        self.assertGreaterEqual(st2["cache_hits"] - st["cache_hits"], 5, st2)
        self.assertGreaterEqual(st2["upstream_queries"] - st["upstream_queries"], 5, st2)
        self.assertGreaterEqual(st2["upstream_answers"] - st["upstream_answers"], 5, st2)
        log("ok: stats keys present; after 10 queries (5 distinct): %s" % {
            k: st2[k] - st[k] for k in ("queries", "answers", "cache_hits", "cache_misses",
                                        "upstream_queries", "upstream_answers")})


if __name__ == "__main__":
    h.main()
