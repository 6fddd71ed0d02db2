#!/usr/bin/python3
"""https:// upstreams (DNS over HTTPS to the resolver, RFC 8484): a real
Unbound serves DoH on its own port (https-port, http-endpoint /dns-query,
certs/dev-cert.pem: a leaf for dns.test; Debian's Unbound is built with
libnghttp2), dnsveil reaches it as
`https://127.0.0.1:PORT/dns-query#dns.test` trusting certs/ca.pem (--ca).

- As the only upstream it answers, over UDP and TCP, and Unbound counts
  the queries as having come over HTTPS (num.query.https).
- 200 queries in flight at once all travel as streams of one HTTP/2
  connection (one worker, one connection: upstream_connects and
  tls_handshakes stay at 1); with the default two connections per server,
  50 at once still share one (an HTTP/2 connection is not "busy" until
  its streams reach the server's SETTINGS_MAX_CONCURRENT_STREAMS).
- A name the certificate does not carry (#wrong.test) is refused:
  SERVFAIL with an Extended DNS Error, the log says the certificate did
  not verify, and Unbound received no query.
- A path the server does not serve (404) fails the attempt: SERVFAIL.
- As the fallback: with the local (plain TCP) upstream dead, the DoH
  fallback answers.
- When the DoH Unbound restarts, dnsveil reconnects to it.

Each Unbound serves `*.whoami.example.test TXT` saying who it is, so every
query can use a fresh, uncacheable name."""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.exception  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402



def doh_url(u, name=h.AUTH_NAME, path="/dns-query"):
    return "https://127.0.0.1:%d%s#%s" % (u.https_port, path, name)


def https_queries(u):
    """Queries the resolver received over DoH (Unbound: num.query.https)."""
    return u.https_queries()


class UpstreamDoh(h.WhoamiChecks, h.IntegrationTest):

    def start_doh_unbound(self, whoami="doh"):
        u = self.start_encrypted_resolver(whoami, "https")
        log("unbound %s: plain %d, DoH %d" % (whoami, u.port, u.https_port))
        return u

    def assert_burst(self, d, n, want="doh"):
        got = self.burst(d, n)
        self.assertEqual(len(got), n, "%d of %d concurrent queries answered" % (len(got), n))
        bad = [m for m in got.values()
               if m.rcode() != dns.rcode.NOERROR or h.txt_value(m) != want]
        self.assertFalse(bad, "%d answers not NOERROR/%r: %s" % (
            len(bad), want, [dns.rcode.to_text(m.rcode()) for m in bad[:5]]))

    def test_only_upstream_multiplexed(self):
        ub = self.start_doh_unbound()
        d = self.start_dnsveil(upstream=[doh_url(ub)], flags=True, workers=1,
                               extra_args=["--ca", h.CA], config=h.pool_config(connections=1))
        https0 = https_queries(ub)
        self.assert_whoami(d, "doh", what="over the https:// upstream")
        self.assertGreaterEqual(https_queries(ub) - https0, 4,
                                "Unbound did not count the queries as DoH: %s" % ub.stats())
        st0 = d.stats()

        n = 200
        self.assert_burst(d, n)
        st = d.stats()
        self.assertEqual(st["upstream_connects"], 1,
                         "one worker with 1 connection opened %d: %s" % (
                                 st["upstream_connects"], st))
        self.assertEqual(st["tls_handshakes"], 1, st)
        self.assertGreaterEqual(st["upstream_answers"] - st0["upstream_answers"], n)
        self.assertGreaterEqual(https_queries(ub) - https0, n + 4, ub.stats())
        log("ok: %d concurrent queries answered as streams of %d HTTP/2 connection(s); "
            "Unbound counted %d DoH queries" % (n, st["upstream_connects"],
                                                https_queries(ub) - https0))

        # the DoH server restarts: dnsveil reconnects
        ub.restart()
        log("restarted the DoH Unbound")

        def answered():
            try:
                m = self.whoami(d, timeout=h.scaled(2))
            except dns.exception.Timeout:
                return False
            return m.rcode() == dns.rcode.NOERROR and h.txt_value(m) == "doh"
        h.wait_for(answered, h.scaled(15), interval=0.2,
                   what="answers over DoH after the upstream restarted")
        self.assert_whoami(d, "doh", what="after the DoH upstream restarted")
        self.assertGreaterEqual(https_queries(ub), 4, ub.stats())
        self.assertGreaterEqual(d.stats()["upstream_connects"], 2)

    def test_streams_before_connections(self):
        """With two connections allowed, a burst that fits in the server's
        stream limit stays on one HTTP/2 connection."""
        ub = self.start_doh_unbound()
        d = self.start_dnsveil(upstream=[doh_url(ub)], flags=True, workers=1,
                               extra_args=["--ca", h.CA], config=h.pool_config(connections=2))
        self.assert_whoami(d, "doh", n=2, what="warm-up")
        n = 50
        self.assert_burst(d, n)
        st = d.stats()
        self.assertEqual(st["upstream_connects"], 1,
                         "%d queries opened %d connections: %s" % (
                             n, st["upstream_connects"], st))
        log("ok: %d concurrent queries on 1 of 2 allowed connections" % n)

    def test_wrong_name_refused(self):
        ub = self.start_doh_unbound()
        q0 = ub.num_queries()  # the harness's readiness probes
        d = self.start_dnsveil(upstream=[doh_url(ub, "wrong.test")], flags=True,
                               extra_args=["--ca", h.CA], config=h.pool_config())
        self.assert_unverified_refused(d)
        self.assertEqual(ub.num_queries(), q0, "a query reached the unverified upstream")
        self.assertEqual(https_queries(ub), 0)
        text = d.stderr_text()
        self.assertIn("certificate did not verify for wrong.test", text,
                      "the log does not say why:\n%s" % h.tail(d.stderr_path))
        self.assertEqual(d.stats()["upstream_answers"], 0)
        log("ok: #wrong.test refused: SERVFAIL with EDE, log says the certificate did not verify")

    def test_wrong_path_fails(self):
        ub = self.start_doh_unbound()
        d = self.start_dnsveil(upstream=[doh_url(ub, path="/nothing-here")], flags=True,
                               extra_args=["--ca", h.CA], config=h.pool_config())
        q = h.make_query(h.unique_label("p") + ".whoami.example.test", "TXT")
        try:
            m = dns.query.udp(q, "127.0.0.1", port=d.port, timeout=h.scaled(10))
        except dns.exception.Timeout:
            self.fail("no answer with an upstream that answers 404")
        self.assertEqual(m.rcode(), dns.rcode.SERVFAIL, dns.rcode.to_text(m.rcode()))
        self.assertTrue(h.ede_codes(m), m.options)
        st = d.stats()
        self.assertEqual(st["upstream_answers"], 0, st)
        self.assertGreaterEqual(st["upstream_failures"], 1, st)
        log("ok: a 404 from the DoH server is a failed attempt (SERVFAIL + EDE)")

    def test_doh_fallback(self):
        dead = h.free_port()  # nothing listens there
        fb = self.start_doh_unbound(whoami="doh")
        d = self.start_dnsveil(upstream=["tcp://127.0.0.1:%d" % dead],
                               fallback=[doh_url(fb)], flags=True,
                               extra_args=["--ca", h.CA], config=h.pool_config())
        https0 = https_queries(fb)
        for i in range(6):
            try:
                m = self.whoami(d, tcp=bool(i % 2))
            except dns.exception.Timeout:
                self.fail("query %d with the local upstream dead timed out" % i)
            self.assertEqual(m.rcode(), dns.rcode.NOERROR,
                             "query %d with local dead: %s" % (i, dns.rcode.to_text(m.rcode())))
            self.assertEqual(h.txt_value(m), "doh",
                             "query %d answered by %r" % (i, h.txt_value(m)))
        st = d.stats()
        self.assertGreaterEqual(st["fallback_queries"], 6, st)
        self.assertGreaterEqual(https_queries(fb) - https0, 6, fb.stats())
        log("ok: with the local upstream dead the DoH fallback answers (%d DoH queries)" % (
            https_queries(fb) - https0))


if __name__ == "__main__":
    h.main()
