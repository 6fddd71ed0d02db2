#!/usr/bin/python3
"""quic:// upstreams (DNS over QUIC to the resolver, RFC 9250): dnsveil A
(the front, a Do53 listener) reaches dnsveil B's own quic:// listener as
`quic://127.0.0.1:P#dns.test`, trusting certs/ca.pem (--ca); B serves
certs/dev-cert.pem (a leaf for dns.test) and forwards to a real Unbound.
Debian 12 packages no DoQ resolver, so B stands in for one; its stats line
says what arrived over DoQ (doq_connections, doq_streams, doq_resumed).

- As the only upstream it answers over UDP and TCP; B counts the queries
  as DoQ streams and A's per-upstream counters show the quic:// server
  answering.
- 200 queries in flight at once share the QUIC connection each A worker
  opened at start (B's doq_connections grows by at most one per worker).
- A connection closed idle (pool.idle-timeout-ms) reopens on demand and
  resumes the TLS session.
- A name the certificate does not carry (#wrong.test) is refused:
  SERVFAIL with an Extended DNS Error, the log says the certificate did
  not verify, and no query reached B's streams.
- When B is killed and restarted (same port, new process: the old
  connection is gone without a CONNECTION_CLOSE), A gives it up and
  reconnects.
- When B is gone, the server goes down at once (ICMP port unreachable),
  queries fail fast with an EDE, and probes bring it back when B returns.
- As the fallback: with the local (plain TCP) upstream dead, the quic://
  fallback answers.
- Against a server with knotd's stream limits (doq-limit-server: a stream
  10 past the oldest unfinished one silences the connection, as Knot DNS
  3.4 drops it without a word; the credit stays at 1,024 streams per
  connection), dnsperf with 500 queries outstanding through A, without
  any setting for it: at least 99% NOERROR, none lost, the server never
  marked down; A opens replacement connections and learns the window.

Unbound serves `*.whoami.example.test TXT` saying who it is, so every
query can use a fresh, uncacheable name."""

import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.exception  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402



#: the DoQ streams of the harness's readiness query on a B it starts (a B
#: restarted while A runs gets A's traffic at once: no snapshot can tell)
READY_STREAMS = 1


def quic_url(b, name=h.AUTH_NAME):
    return "quic://127.0.0.1:%d#%s" % (b.quic_port, name)



def udp_rcvbuf_errors():
    """The kernel's count of UDP datagrams dropped for a full receive
    buffer (/proc/net/snmp Udp RcvbufErrors; the whole machine's)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])

class UpstreamDoq(h.WhoamiChecks, h.IntegrationTest):

    def start_b(self, ub, quic_port=None, workers=2):
        h.ensure_dev_certs()
        b = h.Dnsveil(upstream=[ub], listen=["dns", "quic"], quic_port=quic_port,
                      config=h.dot_config(), name="doq-upstream", workers=workers)
        self._dnsveils.append(b)
        b.start()
        # what B counted before A: the harness's readiness query over DoQ
        b.st0 = b.stats()
        log("dnsveil B: quic://127.0.0.1:%d -> unbound %d" % (b.quic_port, ub.port))
        return b

    def start_a(self, upstream=(), fallback=(), workers=2, **pool):
        return self.start_dnsveil(upstream=upstream, fallback=fallback, flags=True,
                                  workers=workers, name="front",
                                  extra_args=["--ca", h.CA], config=h.pool_config(**pool))

    def answered(self, d):
        try:
            m = self.whoami(d, timeout=h.scaled(2))
        except dns.exception.Timeout:
            return False
        return m.rcode() == dns.rcode.NOERROR and h.txt_value(m) == "local"

    def test_only_upstream_one_connection(self):
        ub = self.start_unbound()
        b = self.start_b(ub)
        workers = 2
        a = self.start_a(upstream=[quic_url(b)], workers=workers, connections=2)
        url = quic_url(b)
        self.assert_whoami(a, what="over the quic:// upstream")
        bst = b.stats()
        self.assertGreaterEqual(bst["doq_streams"] - b.st0["doq_streams"], 4, "B saw no DoQ streams: %s" % bst)
        u = h.upstream_stats(a.stats(), url)
        self.assertGreaterEqual(u["answers"], 4, u)
        self.assertGreaterEqual(u["won"], 4, u)
        self.assertEqual(u["state"], "up", u)

        n = 200
        got = self.burst(a, n)
        self.assertEqual(len(got), n, "%d of %d concurrent queries answered" % (len(got), n))
        bad = [m for m in got.values()
               if m.rcode() != dns.rcode.NOERROR or h.txt_value(m) != "local"]
        self.assertFalse(bad, "%d answers not NOERROR/\"local\": %s" % (
            len(bad), [dns.rcode.to_text(m.rcode()) for m in bad[:5]]))
        st, bst2 = a.stats(), b.stats()
        conns = bst2["doq_connections"] - b.st0["doq_connections"]
        self.assertLessEqual(conns, workers,
                             "B accepted %d QUIC connections from %d A workers: %s" % (
                                 conns, workers, bst2))
        self.assertLessEqual(st["upstream_connects"], workers, st)
        self.assertGreaterEqual(bst2["doq_streams"] - bst["doq_streams"], n, bst2)
        self.assertGreaterEqual(h.upstream_stats(st, url)["won"], n + 4, st)
        self.assertEqual(h.upstream_stats(st, url)["connect_failures"], 0, st)
        log("ok: %d concurrent queries as DoQ streams of %d QUIC connection(s) (%d A workers)" % (
            n, conns, workers))

        # B dies without closing anything and comes back (a new process
        # on the same port drops the packets of A's old connection): A
        # gives that connection up and reconnects
        qport = b.quic_port
        b.kill()
        b2 = self.start_b(ub, quic_port=qport)
        log("killed and restarted B")
        t0 = time.monotonic()
        # each worker finds out on the first query it sends on its old
        # connection (the attempt times out): until both have reconnected
        connects0 = st["upstream_connects"]
        h.wait_for(lambda: self.answered(a) and
                   a.stats()["upstream_connects"] >= connects0 + workers,
                   h.scaled(20), interval=0.1,
                   what="answers over DoQ from every A worker after the upstream restarted")
        log("answered again %.1f s after the restart" % (time.monotonic() - t0))
        self.assert_whoami(a, what="after B restarted")
        self.assertGreaterEqual(b2.stats()["doq_streams"] - READY_STREAMS, 4)

    def test_down_probed_back(self):
        """B gone (ICMP port unreachable): the server goes down at once, the
        queries fail fast, probes find B again when it is back."""
        ub = self.start_unbound()
        b = self.start_b(ub)
        a = self.start_a(upstream=[quic_url(b)], workers=1)
        url = quic_url(b)
        self.assert_whoami(a, n=2, what="before B went away")
        qport = b.quic_port
        b.kill()

        def down():
            try:
                self.whoami(a, timeout=h.scaled(3))
            except dns.exception.Timeout:
                pass
            return h.upstream_stats(a.stats(), url)["state"] == "down"
        h.wait_for(down, h.scaled(10), interval=0.1, what="A to mark the quic:// server down")
        t0 = time.monotonic()
        m = self.whoami(a)
        self.assertEqual(m.rcode(), dns.rcode.SERVFAIL, dns.rcode.to_text(m.rcode()))
        self.assertTrue(h.ede_codes(m), m.options)
        self.assertLess(time.monotonic() - t0, 1.0, "a down server should fail at once")
        u = h.upstream_stats(a.stats(), url)
        self.assertGreaterEqual(u["connect_failures"], 1, u)
        self.assertGreaterEqual(u["went_down"], 1, u)
        time.sleep(0.5)  # a few probes fail
        b2 = self.start_b(ub, quic_port=qport)
        h.wait_for(lambda: h.upstream_stats(a.stats(), url)["state"] == "up", h.scaled(10),
                   interval=0.1, what="probes to bring the quic:// server back")
        self.assert_whoami(a, n=2, what="after B came back")
        u = h.upstream_stats(a.stats(), url)
        self.assertGreaterEqual(u["probes"], 1, u)
        self.assertGreaterEqual(u["probe_answers"], 1, u)
        self.assertGreaterEqual(b2.stats()["doq_streams"] - READY_STREAMS, 3)
        log("ok: B gone -> down (%d connect failures), probes (%d) brought it back" % (
            u["connect_failures"], u["probes"]))

    def test_idle_close_resumes(self):
        ub = self.start_unbound()
        b = self.start_b(ub)
        a = self.start_a(upstream=[quic_url(b)], workers=1, **{"idle-timeout-ms": 300})
        for i in range(3):
            self.assert_whoami(a, n=1, what="(round %d)" % i)
            time.sleep(0.8)  # A closes the idle connection
        st, bst = a.stats(), b.stats()
        u = h.upstream_stats(st, quic_url(b))
        self.assertGreaterEqual(u["idle_closed"], 2, u)
        self.assertGreaterEqual(st["doq_handshakes"], 3, st)
        self.assertGreaterEqual(st["doq_resumed"], 2, "reconnections did not resume: %s" % st)
        self.assertGreaterEqual(bst["doq_resumed"], 2, bst)
        self.assertEqual(u["connect_failures"], 0, u)
        log("ok: %d QUIC connections after idle closes, %d resumed" % (
            st["doq_handshakes"], st["doq_resumed"]))

    def test_wrong_name_refused(self):
        ub = self.start_unbound()
        b = self.start_b(ub)
        a = self.start_a(upstream=[quic_url(b, "wrong.test")])
        self.assert_unverified_refused(a)
        self.assertEqual(b.stats()["doq_streams"] - b.st0["doq_streams"], 0,
                         "a query reached the unverified upstream")
        text = a.stderr_text()
        self.assertIn("certificate did not verify for wrong.test", text,
                      "the log does not say why:\n%s" % h.tail(a.stderr_path))
        st = a.stats()
        self.assertEqual(st["upstream_answers"], 0, st)
        u = h.upstream_stats(st, quic_url(b, "wrong.test"))
        self.assertGreaterEqual(u["connect_failures"], 1, u)
        self.assertEqual(u["state"], "down", u)
        log("ok: #wrong.test refused: SERVFAIL with EDE, log says the certificate did not verify")

    def test_doq_fallback(self):
        ub = self.start_unbound()
        b = self.start_b(ub)
        dead = h.free_port()  # nothing listens there
        a = self.start_a(upstream=["tcp://127.0.0.1:%d" % dead], fallback=[quic_url(b)])
        s0 = b.stats()["doq_streams"]
        for i in range(6):
            try:
                m = self.whoami(a, tcp=bool(i % 2))
            except dns.exception.Timeout:
                self.fail("query %d with the local upstream dead timed out" % i)
            self.assertEqual(m.rcode(), dns.rcode.NOERROR,
                             "query %d with local dead: %s" % (i, dns.rcode.to_text(m.rcode())))
            self.assertEqual(h.txt_value(m), "local",
                             "query %d answered by %r" % (i, h.txt_value(m)))
        st = a.stats()
        self.assertGreaterEqual(st["fallback_queries"], 6, st)
        self.assertGreaterEqual(h.upstream_stats(st, quic_url(b))["won"], 6, st)
        self.assertGreaterEqual(b.stats()["doq_streams"] - s0, 6)
        log("ok: with the local upstream dead the quic:// fallback answers")

    def knot_like_load(self, seconds, outstanding, **pool):
        """dnsperf through A (one worker, no cache hits: every name is new)
        to a doq-limit-server with knotd's limits in front of Unbound.
        Returns (dnsperf numbers, A's stats, the server's stats)."""
        ub = self.start_unbound(log_queries=False)
        srv = h.DoqLimitServer(ub, max_unfinished=10, max_streams=1024,
                               max_streams_total=1024)
        self.addCleanup(srv.cleanup)
        srv.start()
        a = self.start_a(upstream=[srv.url()], workers=1, **pool)
        qfile = os.path.join(a.dir, "queries.txt")
        with open(qfile, "w") as f:
            for i in range(200000):
                f.write("k%d.wild.example.test A\n" % i)
        drops0 = udp_rcvbuf_errors()
        res, out = h.dnsperf(a.port, qfile, "-c", "1", "-q", str(outstanding),
                             "-l", str(seconds), "-t", "5",
                             timeout=seconds + 60)
        res["kernel_drops"] = udp_rcvbuf_errors() - drops0
        self.assertEqual(res["rc"], 0, out)
        st = a.stats()
        u = h.upstream_stats(st, srv.url())
        sst = srv.stats()
        sent = res.get("sent", 0)
        ok = res.get("noerror", 0)
        log("dnsperf -q %d -l %d through A to a knotd-like DoQ server: sent %d, NOERROR %d "
            "(%.2f%%), SERVFAIL %d (%.2f%%), lost %d (%.2f%%), %.0f qps; upstream went down %d "
            "times, %d connects, %d retried; server: %s; A received %d queries and sent %d "
            "answers; kernel UDP receive-buffer drops %d" % (
                outstanding, seconds, sent, ok, 100.0 * ok / max(sent, 1),
                res.get("servfail", 0), 100.0 * res.get("servfail", 0) / max(sent, 1),
                res.get("lost", 0), 100.0 * res.get("lost", 0) / max(sent, 1), res.get("qps", 0),
                u["went_down"], u["connects"], st.get("upstream_retries", 0), sst,
                st["queries"], st["answers"], res["kernel_drops"]))
        return res, out, u, sst, st

    def test_knot_like_stream_limits(self):
        """knotd's limits (10 unfinished streams, 1,024 per connection)
        must not turn load into SERVFAILs: A keeps its windows under the
        limit it learns, replaces spent connections, and retries the
        queries of a connection that went silent."""
        seconds = 5 if h.SANITIZE else 10
        outstanding = 200 if h.SANITIZE else 500
        res, out, u, sst, st = self.knot_like_load(seconds, outstanding)
        sent = res.get("sent", 0)
        self.assertGreater(sent, 1000, out)
        answered = sent - res.get("lost", 0)
        self.assertGreaterEqual(res.get("noerror", 0), 0.99 * answered,
                                "fewer than 99%% of the answers NOERROR:\n%s" % out)
        # A answers every query it reads (SERVFAIL at the latest, at its
        # 3 s deadline, well inside dnsperf's 5 s); dnsperf may still lose
        # a few on a loaded machine when a UDP socket's receive buffer
        # overflows (dnsperf's or A's listener): the kernel counts those
        self.assertEqual(st["answers"], st["queries"], "A left queries unanswered: %s" % out)
        self.assertLessEqual(res.get("lost", 0), res["kernel_drops"],
                             "queries lost beyond the kernel's UDP receive-buffer drops "
                             "(%d): %s" % (res["kernel_drops"], out))
        self.assertEqual(u["went_down"], 0, "the upstream flapped down: %s" % u)
        # both limits were met, so the test proves what it says
        self.assertGreaterEqual(sst["connections"], 2, sst)
        log("ok: knotd's stream limits cost no answers")


if __name__ == "__main__":
    h.main()
