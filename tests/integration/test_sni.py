#!/usr/bin/python3
"""The SNI a client sends, as every TLS listener treats it (src/tls/sni.h):
a host name is recorded (the core's identity stage reads it as q->sni and
the handshake's debug line shows it), while an IP literal or anything else
that is not a host name is ignored as if absent: the handshake completes
with the default certificate and the line says "sni -".

Real clients over IPv6 loopback put the literal on the wire: kdig @::1
+tls sends "::1" (DoT), openssl s_client -servername sends what it is given
(DoT and DoH, HTTP/1.1), and dnsveil-doq --name sends its name through
GnuTLS (DoQ; Debian 12's kdig is built without QUIC: +quic falls back to
UDP).  One dnsveil (one worker, log-level debug) listens on 127.0.0.1 and
[::1] for tls://, https:// and quic://.

GnuTLS 3.7 (the DoQ listener's TLS library on Debian 12) refuses a
server_name holding a byte other than a letter, digit, '-' or '.' -- so the
IPv6 literal "::1" -- before dnsveil can ignore it; that one case is
asserted at its target under expectedFailure, and the failure's debug line
must say why."""

import os
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

h.ensure_dev_certs()

WWW = "www.example.test"
WWW_ADDR = "192.0.2.1"
# the TLS and QUIC handshake lines: client, sni, alpn
HS_LINE = r"%s: worker 0: connection from (\S+): sni (\S+), alpn (\S+)"


class SniLiterals(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        # a machine without ::1 fails these tests rather than skipping them
        self.assertTrue(h.have_ipv6_loopback(), "no ::1 on this machine")
        self.ub = self.start_unbound(log_queries=False)
        self.tls_port = h.free_port(ipv6=True)
        self.https_port = h.free_port(ipv6=True)
        self.quic_port = h.free_port(ipv6=True)
        listen = ["dns"]
        for host in ("127.0.0.1", "[::1]"):
            listen += ["tls://%s:%d" % (host, self.tls_port),
                       "https://%s:%d%s" % (host, self.https_port, h.PATH),
                       "quic://%s:%d" % (host, self.quic_port)]
        self.dv = h.Dnsveil(listen=listen, upstream=[self.ub], workers=1, name="sni",
                            config=dict(h.dot_config(), **{"log-level": "debug"}))
        self._dnsveils.append(self.dv)
        self.dv.start()

    def handshakes(self, proto, mark):
        """(client, sni, alpn) of every handshake line after `mark`."""
        return [m.groups() for m in self.dv.log_lines(HS_LINE % proto, start=mark)]

    def wait_handshakes(self, proto, mark, n=1):
        h.wait_for(lambda: len(self.handshakes(proto, mark)) >= n, h.scaled(5),
                   what="%d %s handshake line(s)" % (n, proto))
        return self.handshakes(proto, mark)

    def openssl(self, port, servername, alpn, stdin=b""):
        """openssl s_client to [::1]:port sending `servername` as SNI,
        verifying the test CA.  Returns its output."""
        cmd = [h.OPENSSL, "s_client", "-connect", "[::1]:%d" % port, "-servername",
               servername, "-alpn", alpn, "-CAfile", h.CA, "-verify_return_error"]
        if stdin:
            cmd.append("-quiet")
        r = subprocess.run(cmd, input=stdin, capture_output=True, timeout=h.scaled(15))
        return (r.stdout + r.stderr).decode(errors="replace")

    # ------------------------------------------------------------ DoT
    def test_dot_kdig_ipv6_literal(self):
        """kdig @::1 +tls sends SNI "::1" (and verifies the IP SAN ::1):
        answered, recorded as no SNI; with +tls-hostname=dns.test the name
        is recorded."""
        mark = len(self.dv.stderr_text())
        r = h.kdig(self.tls_port, WWW, "A", "+tls", "+tls-ca=%s" % h.CA, server="::1")
        self.assertEqual(h.kdig_answers(r), [(WWW + ".", [WWW_ADDR])], repr(r))
        got = self.wait_handshakes("tls", mark)
        log("kdig @::1 +tls: %s" % got)
        self.assertEqual(len(got), 1, got)
        self.assertRegex(got[0][0], r"^\[::1\]:\d+$")
        self.assertEqual(got[0][1:], ("-", "dot"), "an IP literal SNI is no SNI: %s" % got)

        mark = len(self.dv.stderr_text())
        r = h.kdig(self.tls_port, WWW, "A", "+tls", "+tls-ca=%s" % h.CA,
                   "+tls-hostname=dns.test", server="::1")
        self.assertEqual(h.kdig_answers(r), [(WWW + ".", [WWW_ADDR])], repr(r))
        got = self.wait_handshakes("tls", mark)
        self.assertEqual([g[1:] for g in got], [("dns.test", "dot")], got)
        log("ok: DoT over ::1: SNI '::1' -> sni -, SNI dns.test -> sni dns.test")

    def test_dot_names_that_are_not_host_names(self):
        """Literals and malformed names on the wire (openssl s_client
        -servername): each handshake completes, none is recorded."""
        for name in ("::1", "127.0.0.1", "192.0.2.1", "dns.test.", "dns_test.example",
                     "-dns.test"):
            mark = len(self.dv.stderr_text())
            out = self.openssl(self.tls_port, name, "dot")
            self.assertIn("Verify return code: 0 (ok)", out, "SNI %r: %s" % (name, out[-1500:]))
            got = self.wait_handshakes("tls", mark)
            self.assertEqual([g[1:] for g in got], [("-", "dot")],
                             "SNI %r must be ignored: %s" % (name, got))
        mark = len(self.dv.stderr_text())
        self.openssl(self.tls_port, "laptop-42.dns.test", "dot")
        got = self.wait_handshakes("tls", mark)
        self.assertEqual([g[1:] for g in got], [("laptop-42.dns.test", "dot")], got)
        log("ok: DoT: IP literals and non-host-names ignored, a host name recorded")

    # ------------------------------------------------------------ DoH
    def test_doh_ipv6_literal(self):
        """A DoH GET over [::1] on a connection whose SNI is "::1" (curl
        sends none for a literal; openssl does what it is told)."""
        wire = h.query_wire(WWW)
        mark = len(self.dv.stderr_text())
        out = self.openssl(self.https_port, "::1", "http/1.1", stdin=h.get_request(wire))
        self.assertIn("HTTP/1.1 200", out, out[-2000:])
        got = self.wait_handshakes("tls", mark)
        self.assertEqual(len(got), 1, got)
        self.assertRegex(got[0][0], r"^\[::1\]:\d+$")
        self.assertEqual(got[0][1:], ("-", "http/1.1"), got)
        mark = len(self.dv.stderr_text())
        out = self.openssl(self.https_port, "dns.test", "http/1.1", stdin=h.get_request(wire))
        self.assertIn("HTTP/1.1 200", out, out[-2000:])
        got = self.wait_handshakes("tls", mark)
        self.assertEqual([g[1:] for g in got], [("dns.test", "http/1.1")], got)
        log("ok: DoH over ::1: SNI '::1' answered 200 with sni -, dns.test recorded")

    # ------------------------------------------------------------ DoQ
    def doq(self, name):
        return h.Doq(self.quic_port, ["--name", name, "--ca", h.CA], trust=False, host="::1")

    def test_doq_sni_recorded_and_literal_ignored(self):
        """DoQ logs each handshake like the TLS listeners: a host name is
        recorded, an IPv4 literal (which GnuTLS lets through) is not."""
        for name, want in (("dns.test", "dns.test"), ("127.0.0.1", "-"),
                           ("localhost", "localhost")):
            mark = len(self.dv.stderr_text())
            r = self.doq(name)
            self.assertEqual(r.summary["answers"], 1, "--name %s: %r" % (name, r))
            got = self.wait_handshakes("quic", mark)
            self.assertEqual(len(got), 1, got)
            self.assertRegex(got[0][0], r"^\[::1\]:\d+$")
            self.assertEqual(got[0][1:], (want, "doq"), "--name %s: %s" % (name, got))
        log("ok: DoQ over ::1: sni dns.test / localhost recorded, 127.0.0.1 -> sni -")

    @unittest.expectedFailure
    def test_doq_ipv6_literal_answered(self):
        """The target: SNI "::1" ignored on DoQ as on DoT.  GnuTLS 3.7
        refuses the name itself (illegal_parameter) and offers no way to
        override its server_name parser; see the module text."""
        r = self.doq("::1")
        self.assertEqual(r.summary["answers"], 1, repr(r))

    def test_doq_ipv6_literal_failure_says_why(self):
        mark = len(self.dv.stderr_text())
        r = self.doq("::1")
        if r.summary["answers"]:
            return  # answered: test_doq_ipv6_literal_answered reports it
        m = self.dv.wait_log(r"quic: worker 0: connection from \[::1\]:\d+ failed its "
                             r"handshake: .*SNI '::1' is not a host name", start=mark)
        log("DoQ, SNI '::1': %s" % m.group(0))
        self.assertTrue(self.dv.alive())


if __name__ == "__main__":
    h.main()
