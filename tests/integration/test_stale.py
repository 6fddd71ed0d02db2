#!/usr/bin/python3
"""Resilience of the cache against a real Unbound: serve-stale (RFC 8767)
when every upstream is dead, a fresh answer again once one is back,
prefetch of a popular short-lived name (its clients never see a miss), and
SERVFAIL caching (a broken name does not hammer the resolver).

Short-lived names come from Unbound local-data (or, with kresd, from its
authority with kresd's cache off for them), whose TTL does not count
down: every fetch of them gets the full TTL."""

import os
import signal
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

SHORT = "short.example.test"     # TTL 2
PREFETCH = "pf.example.test"     # TTL 4
LOCAL_DATA = [(SHORT, 2, "A", "192.0.2.77"), (PREFETCH, 4, "A", "192.0.2.78")]
EDE_STALE = 3


def stale_config(**cache):
    c = {"stale-max-age-s": 3600, "stale-answer-timeout-ms": 1800,
         "servfail-ttl-s": 2, "prefetch-hits": 5, "prefetch-window-pct": 10}
    c.update(cache)
    return h.base_config(cache=c, pool={
        "hedge-delay-ms": 200, "query-timeout-ms": 2000, "timeout-ms": 1000,
        "connections": 1, "reconnect-min-ms": 50, "reconnect-max-ms": 300})


def ttls(m):
    return [x[2] for x in h.rrset_texts(m)]


def query(d, name, edns=0, rdtype="A"):
    q = h.make_query(name, rdtype, edns=edns)
    return dns.query.udp(q, "127.0.0.1", port=d.port, timeout=h.scaled(5))


class Stale(h.IntegrationTest):

    def test_stale_when_upstreams_dead_then_fresh(self):
        local = self.start_resolver(whoami="local", local_data=LOCAL_DATA)
        d = self.start_dnsveil(upstream=[local], config=stale_config())
        m = query(d, SHORT)
        self.assertEqual(m.rcode(), dns.rcode.NOERROR, m)
        self.assertEqual(ttls(m), [2], m)
        time.sleep(3.2)  # expired in dnsveil's cache
        st0 = d.stats()
        local.kill()
        log("killed the only upstream; %s expired" % SHORT)

        # (a) the expired answer, TTL 30 and EDE 3 (EDNS), no OPT without
        for edns in (0, None):
            m = query(d, SHORT, edns=edns)
            self.assertEqual(m.rcode(), dns.rcode.NOERROR,
                             "stale answer expected: %s" % m)
            self.assertEqual([x[3] for x in h.rrset_texts(m)], ["192.0.2.77"], m)
            self.assertEqual(ttls(m), [30], "stale answer TTL: %s" % m)
            if edns is None:
                self.assertEqual(m.edns, -1, "OPT in the answer to a query without EDNS")
            else:
                self.assertEqual(h.ede_codes(m), [EDE_STALE], "EDE of a stale answer: %s" % m)
        log("ok: stale answer with TTL 30 and EDE 3 (none without EDNS)")
        m = query(d, h.unique_label("unknown") + ".example.test")
        self.assertEqual(m.rcode(), dns.rcode.SERVFAIL, m)
        self.assertTrue(h.ede_codes(m), "SERVFAIL without an EDE: %s" % m)
        log("ok: unknown name: SERVFAIL with EDE %s" % h.ede_codes(m))
        st1 = d.stats()
        self.assertGreaterEqual(st1["stale_served"] - st0["stale_served"], 2, st1)

        # (b) the upstream is back: fresh answers once the remembered
        # failure (servfail-ttl-s 2) is over
        local.start()
        log("restarted the upstream")

        def fresh():
            m = query(d, SHORT)
            return m.rcode() == dns.rcode.NOERROR and ttls(m) and ttls(m)[0] <= 2 and \
                EDE_STALE not in h.ede_codes(m)
        h.wait_for(fresh, h.scaled(10), interval=0.2, what="a fresh answer after the restart")
        m = query(d, SHORT)
        self.assertEqual(m.rcode(), dns.rcode.NOERROR, m)
        self.assertLessEqual(ttls(m)[0], 2, m)
        self.assertNotIn(EDE_STALE, h.ede_codes(m), m)
        log("ok: fresh answer (TTL %d) with the upstream back" % ttls(m)[0])

    def test_stale_when_upstream_silent(self):
        """RFC 8767's client response timer: the upstream is alive but does
        not answer (SIGSTOPped); after stale-answer-timeout-ms the client
        gets the stale answer, exactly once, and the refresh goes on."""
        local = self.start_resolver(whoami="local", local_data=LOCAL_DATA)
        d = self.start_dnsveil(upstream=[local], config=stale_config(**{
            "stale-answer-timeout-ms": 400}))
        self.assertEqual(ttls(query(d, SHORT)), [2])
        time.sleep(3.2)
        st0 = d.stats()
        local.proc.send_signal(signal.SIGSTOP)
        try:
            q = h.make_query(SHORT, "A", edns=0)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(h.scaled(5))
            t0 = time.monotonic()
            s.sendto(q.to_wire(), ("127.0.0.1", d.port))
            wire, _ = s.recvfrom(65535)
            dt = time.monotonic() - t0
            m = dns.message.from_wire(wire)
            self.assertEqual(m.id, q.id)
            self.assertEqual(m.rcode(), dns.rcode.NOERROR, m)
            self.assertEqual(ttls(m), [30], m)
            self.assertEqual(h.ede_codes(m), [EDE_STALE], m)
            self.assertGreaterEqual(dt, 0.3, "stale answer before the timer: %.3fs" % dt)
            self.assertLess(dt, 1.0, "stale answer after %.3fs (timer 0.4 s)" % dt)
            log("ok: stale answer after %.3fs with the upstream silent" % dt)
            # the fetch goes on (and fails at timeout-ms): no second answer
            s.settimeout(2.0)
            try:
                extra, _ = s.recvfrom(65535)
                self.fail("a second answer to one query: %r" % (extra,))
            except socket.timeout:
                pass
            s.close()
        finally:
            local.proc.send_signal(signal.SIGCONT)
        st1 = d.stats()
        self.assertGreaterEqual(st1["stale_served"] - st0["stale_served"], 1, st1)

        def fresh():
            m = query(d, SHORT)
            return m.rcode() == dns.rcode.NOERROR and ttls(m) and ttls(m)[0] <= 2 and \
                EDE_STALE not in h.ede_codes(m)
        h.wait_for(fresh, h.scaled(10), interval=0.2, what="a fresh answer after SIGCONT")
        log("ok: exactly one answer; fresh again after the upstream woke up")

    def test_prefetch_never_shows_a_miss(self):
        local = self.start_resolver(whoami="local", local_data=LOCAL_DATA)
        d = self.start_dnsveil(upstream=[local], config=stale_config())
        st0 = d.stats()
        t_end = time.monotonic() + 8.0
        n = 0
        bad = []
        while time.monotonic() < t_end:
            m = query(d, PREFETCH)
            n += 1
            if m.rcode() != dns.rcode.NOERROR or not ttls(m) or min(ttls(m)) <= 0:
                bad.append((m.rcode(), ttls(m)))
            time.sleep(0.2)
        st1 = d.stats()
        misses = st1["cache_misses"] - st0["cache_misses"]
        pf = st1["prefetches"] - st0["prefetches"]
        log("%d queries, misses %d, prefetches %d, bad %s" % (n, misses, pf, bad[:5]))
        self.assertEqual(bad, [], "answers that were not NOERROR with TTL > 0")
        self.assertEqual(misses, 1, "the name expired in the cache: %s" % st1)
        self.assertGreater(pf, 0, st1)
        log("ok: prefetch kept %s (TTL 4) in the cache for 8 s" % PREFETCH)

    def test_servfail_cached(self):
        slow = self.start_slow(delay=0.0)
        local = self.start_resolver(whoami="local", slow=slow)
        d = self.start_dnsveil(upstream=[local], config=stale_config(**{"servfail-ttl-s": 5}))
        slow.stop()  # the authority of slow.example.test is dead
        name = h.unique_label("dead") + ".slow.example.test"
        st0 = d.stats()
        t0 = time.monotonic()
        m = query(d, name)
        self.assertEqual(m.rcode(), dns.rcode.SERVFAIL, m)
        self.assertTrue(h.ede_codes(m), "SERVFAIL without an EDE: %s" % m)
        log("first query: SERVFAIL with EDE %s after %.2fs" % (h.ede_codes(m),
                                                            time.monotonic() - t0))
        t1 = time.monotonic()
        for i in range(4):
            m = query(d, name, edns=0 if i % 2 else None)
            self.assertEqual(m.rcode(), dns.rcode.SERVFAIL, m)
            if i % 2:
                self.assertTrue(h.ede_codes(m), "cached SERVFAIL without an EDE: %s" % m)
        self.assertLess(time.monotonic() - t1, 2.0)
        time.sleep(0.5)  # Unbound's log
        n = local.queries_for(name)
        st1 = d.stats()
        log("Unbound saw %d queries for %s; servfail_cached %d" % (
            n, name, st1["servfail_cached"] - st0["servfail_cached"]))
        self.assertLessEqual(n, 2, "a broken name hammered the resolver")
        self.assertGreaterEqual(st1["servfail_cached"] - st0["servfail_cached"], 3, st1)
        log("ok: 5 queries, %d upstream" % n)


if __name__ == "__main__":
    h.main()
