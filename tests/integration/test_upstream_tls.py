#!/usr/bin/python3
"""tls:// upstreams (DNS over TLS to the resolver, RFC 7858): a real
Unbound serves DoT on its own port (tls-port, certs/dev-cert.pem: a leaf
for dns.test), dnsveil reaches it as `tls://127.0.0.1:TLSPORT#dns.test`
trusting certs/ca.pem (--ca).

- As the only upstream it answers, over UDP and TCP, and 200 queries in
  flight at once all travel over one persistent TLS connection.
- A name the certificate does not carry (#wrong.test) is refused: SERVFAIL
  with an Extended DNS Error, and the log says the certificate did not
  verify.
- As the fallback: with the local (plain TCP) Unbound killed, the DoT
  fallback answers.
- When the DoT Unbound restarts, dnsveil reconnects to it.
- A new connection to a server resumes the last session (the upstream here
  is a second dnsveil with a DoT listener, which issues session tickets and
  closes idle connections quickly).

Each Unbound serves `*.whoami.example.test TXT` saying who it is, so every
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



def tls_url(u, name=h.AUTH_NAME):
    return "tls://127.0.0.1:%d#%s" % (u.tls_port, name)


class UpstreamTls(h.WhoamiChecks, h.IntegrationTest):

    def start_dot_unbound(self, whoami="dot"):
        u = self.start_encrypted_resolver(whoami, "tls")
        log("unbound %s: plain %d, DoT %d" % (whoami, u.port, u.tls_port))
        return u

    def test_only_upstream_pipelined(self):
        ub = self.start_dot_unbound()
        d = self.start_dnsveil(upstream=[tls_url(ub)], flags=True, workers=1,
                               extra_args=["--ca", h.CA], config=h.pool_config(connections=1))
        self.assert_whoami(d, "dot", what="over the tls:// upstream")
        connects0 = d.stats()["upstream_connects"]

        n = 200
        got = self.burst(d, n)
        self.assertEqual(len(got), n, "%d of %d concurrent queries answered" % (len(got), n))
        bad = [m for m in got.values()
               if m.rcode() != dns.rcode.NOERROR or h.txt_value(m) != "dot"]
        self.assertFalse(bad, "%d answers not NOERROR/\"dot\": %s" % (
            len(bad), [dns.rcode.to_text(m.rcode()) for m in bad[:5]]))
        st = d.stats()
        self.assertEqual(st["upstream_connects"], 1,
                         "one worker with 1 connection opened %d: %s" % (
                                 st["upstream_connects"], st))
        self.assertEqual(st["upstream_connects"], connects0,
                         "the burst opened new connections: %s" % st)
        self.assertGreaterEqual(st["upstream_answers"], n)
        log("ok: %d concurrent queries answered over %d TLS connection(s)" % (
            n, st["upstream_connects"]))

        # the DoT server restarts: dnsveil reconnects (and may resume)
        ub.restart()
        log("restarted the DoT Unbound")

        def answered():
            try:
                m = self.whoami(d, timeout=h.scaled(2))
            except dns.exception.Timeout:
                return False
            return m.rcode() == dns.rcode.NOERROR and h.txt_value(m) == "dot"
        h.wait_for(answered, h.scaled(15), interval=0.2,
                   what="answers over TLS after the upstream restarted")
        self.assert_whoami(d, "dot", what="after the DoT upstream restarted")

    def test_wrong_name_refused(self):
        ub = self.start_dot_unbound()
        q0 = ub.num_queries()  # the harness's readiness probes
        d = self.start_dnsveil(upstream=[tls_url(ub, "wrong.test")], flags=True,
                               extra_args=["--ca", h.CA], config=h.pool_config())
        self.assert_unverified_refused(d)
        self.assertEqual(ub.num_queries(), q0, "a query reached the unverified upstream")
        text = d.stderr_text()
        self.assertIn("certificate did not verify", text,
                      "the log does not say why:\n%s" % h.tail(d.stderr_path))
        self.assertLessEqual(text.count("certificate did not verify for wrong.test ("),
                             text.count("TLS handshake failed"),
                             "log lines:\n%s" % h.tail(d.stderr_path))
        log("ok: #wrong.test refused: SERVFAIL with EDE, log says the certificate did not verify")

    def test_dot_fallback(self):
        local = self.start_resolver(whoami="local")
        fb = self.start_dot_unbound(whoami="dot")
        d = self.start_dnsveil(upstream=[local], fallback=[tls_url(fb)], flags=True,
                               extra_args=["--ca", h.CA], config=h.pool_config())
        self.assert_whoami(d, "local", what="with both up")
        st0 = d.stats()
        local.kill()
        log("killed the local Unbound (pid %d)" % local.proc.pid)
        for i in range(6):
            try:
                m = self.whoami(d, tcp=bool(i % 2))
            except dns.exception.Timeout:
                self.fail("query %d after killing the local upstream timed out" % i)
            self.assertEqual(m.rcode(), dns.rcode.NOERROR,
                             "query %d with local dead: %s" % (i, dns.rcode.to_text(m.rcode())))
            self.assertEqual(h.txt_value(m), "dot",
                             "query %d answered by %r" % (i, h.txt_value(m)))
        st1 = d.stats()
        self.assertGreater(st1["fallback_queries"], st0["fallback_queries"], st1)
        log("ok: with local dead the DoT fallback answers")

    def test_session_resumed(self):
        h.ensure_dev_certs()
        ub = self.start_resolver(whoami="local")
        tls_port = h.free_port()
        front = self.start_dnsveil(
            upstream=[ub], name="dot-upstream",
            listen=["dns://127.0.0.1:{port}", "tls://127.0.0.1:%d" % tls_port],
            config=h.base_config(limits={"tcp-idle-timeout-ms": 300},
                                 tls={"cert": h.CERT, "key": h.KEY}))
        d = self.start_dnsveil(upstream=["tls://127.0.0.1:%d#dns.test" % tls_port], workers=1,
                               flags=True, extra_args=["--ca", h.CA],
                               config=h.pool_config(connections=1))
        for i in range(4):
            self.assert_whoami(d, "local", n=1, what="(round %d)" % i)
            time.sleep(0.6)  # the upstream closes the idle connection
        st = d.stats()
        self.assertGreaterEqual(st["tls_handshakes"], 3, st)
        self.assertGreaterEqual(st["tls_resumed"], 2,
                                "reconnections did not resume the session: %s" % st)
        self.assertGreaterEqual(front.stats()["tls_resumed"], 2)
        log("ok: %d TLS connections to the upstream, %d resumed" % (
            st["tls_handshakes"], st["tls_resumed"]))


if __name__ == "__main__":
    h.main()
