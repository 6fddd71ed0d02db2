#!/usr/bin/env python3
"""TLS client certificates as a client identity (mTLS, README "Policy",
tls.client-ca / tls.client-cert), through real clients: kdig over DoT
(+tls-certfile/+tls-keyfile), openssl s_client -cert, curl --cert over DoH
(wire-format POST) and dnsveil-doq --cert/--key over DoQ.

The test makes its own PKI with openssl: a client CA, a certificate for
kid-7 (DNS name kid-7.clients.test), one for kid-8 with only a subject CN,
and a kid-7 certificate from another CA.  Groups: kids (`id: kid-*`) and
default answer the local record who.mtls.test with 192.0.2.7 and 192.0.2.1;
laptop-1 (an SNI or DoH path ID) belongs to the default group, so a kid-7
certificate beside it shows that the certificate's ID wins.

With tls.client-cert optional a client without a certificate, or with one
from another CA, is the default group; with require its handshake fails.
Listeners that ask for certificates resume no session (a resumed session
would carry none)."""

import os
import re
import shutil
import signal
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402
from dvtest.doh import curl_post  # noqa: E402

import dns.message  # noqa: E402
import dns.rcode  # noqa: E402

h.ensure_dev_certs()

NAME = "who.mtls.test"
KIDS, DEFAULT = "192.0.2.7", "192.0.2.1"
POLICY = """groups:
  default:
    records: ["%s. 300 IN A %s"]
  kids:
    records: ["%s. 300 IN A %s"]
clients:
  - { id: "kid-*", group: kids }
  - { id: laptop-1, group: default }
policy:
  server-names: [dns.test]
""" % (NAME, DEFAULT, NAME, KIDS)


def answer_of(msg):
    return [rr.to_text() for rrset in msg.answer for rr in rrset if rrset.rdtype == 1]


class Mtls(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.pki = tempfile.mkdtemp(prefix="dv-mtls-")
        self.addCleanup(lambda: None if self._failure_count() > self._failures_at_start
                        else shutil.rmtree(self.pki, ignore_errors=True))
        self.ca = h.make_ca(self.pki, "clients", "dnsveil test client CA")
        self.kid7 = h.make_leaf(self.pki, "kid7", "clients", cn="kid-7",
                                sans="DNS:kid-7.clients.test", eku="clientAuth")
        self.kid8 = h.make_leaf(self.pki, "kid8", "clients", cn="kid-8", sans=None,
                                eku="clientAuth")
        h.make_ca(self.pki, "rogue", "another CA")
        self.rogue = h.make_leaf(self.pki, "rogue7", "rogue", cn="kid-7",
                                 sans="DNS:kid-7.clients.test", eku="clientAuth")
        self.ub = self.start_unbound(log_queries=False)

    def start_dv(self, mode):
        cfg = h.doh_config(tls={"client-ca": self.ca, "client-cert": mode})
        cfg["log-level"] = "debug"
        dv = h.Dnsveil(listen=["dns", "tls", "https", "quic"], upstream=[self.ub], config=cfg,
                       extra_yaml=POLICY, name="mtls-" + mode, ready=(mode == "optional"))
        self._dnsveils.append(dv)
        dv.start()
        return dv

    # ---- clients: each returns the A records of the answer, or None when
    # ---- there was no answer (a refused handshake)

    def dot(self, dv, cert=None, sni=None):
        opts = ["+tls-sni=%s" % sni] if sni else []
        if cert:
            opts += ["+tls-certfile=%s" % cert[0], "+tls-keyfile=%s" % cert[1]]
        r = h.kdig_tls(dv.tls_port, [(NAME, "A")], *opts)
        if not r.messages:
            return None
        return [x for x in h.kdig_answers(r)[0][1]]

    def doh(self, dv, cert=None, path=None):
        extra = ("--cert", cert[0], "--key", cert[1]) if cert else ()
        r = curl_post(dv, "https-h2", h.make_query(NAME, "A").to_wire(), path=path,
                      extra=extra)
        if r.status != 200:
            return None
        return [x.split()[-1] for x in answer_of(dns.message.from_wire(r.body))]

    def doq(self, dv, cert=None, sni="dns.test"):
        args = ["--name", sni, "--ca", h.CA, "--timeout", "2"]
        if cert:
            args += ["--cert", cert[0], "--key", cert[1]]
        r = dv.doq(*args, trust=False, names=(NAME, "A"))
        if len(r.answers) != 1:
            return None
        self.assertEqual(r.answers[0]["rcode"], "NOERROR", r)
        return [x.split()[-1] for x in r.answers[0]["answers"]]

    # ---- tests

    def test_optional(self):
        """tls.client-cert optional: a kid-7 certificate under the client CA
        puts DoT, DoH and DoQ queries in the kids group, also beside an SNI or
        a DoH path that names laptop-1 (default group): the certificate wins.
        A CN-only certificate names kid-8.  Without a certificate, or with
        kid-7's from another CA, the client connects and is the default
        group.  The handshake's debug line names the certificate's ID."""
        dv = self.start_dv("optional")
        for proto in (self.dot, self.doh, self.doq):
            with self.subTest(proto=proto.__name__):
                self.assertEqual(proto(dv, self.kid7), [KIDS])
                self.assertEqual(proto(dv, self.kid8), [KIDS])
                self.assertEqual(proto(dv), [DEFAULT])
                self.assertEqual(proto(dv, self.rogue), [DEFAULT])
        # the proven ID beats the claimed one
        self.assertEqual(self.dot(dv, sni="laptop-1.dns.test"), [DEFAULT])
        self.assertEqual(self.dot(dv, self.kid7, sni="laptop-1.dns.test"), [KIDS])
        self.assertEqual(self.doq(dv, sni="laptop-1.dns.test"), [DEFAULT])
        self.assertEqual(self.doq(dv, self.kid7, sni="laptop-1.dns.test"), [KIDS])
        self.assertEqual(self.doh(dv, path="/dns-query/laptop-1"), [DEFAULT])
        self.assertEqual(self.doh(dv, self.kid7, path="/dns-query/laptop-1"), [KIDS])
        # without the certificate the SNI's ID still counts
        self.assertEqual(self.dot(dv, sni="kid-3.dns.test"), [KIDS])
        dv.wait_log(r"tls: worker \d+: connection from 127\.0\.0\.1:\d+: sni dns\.test, "
                    r"alpn dot, cert kid-7")
        dv.wait_log(r"quic: worker \d+: connection from 127\.0\.0\.1:\d+: sni dns\.test, "
                    r"alpn doq, cert kid-8")
        dv.wait_log(r"policy: client 127\.0\.0\.1 id kid-7 group kids")
        log("ok: DoT, DoH and DoQ: kid-7/kid-8 certificates -> kids, none or another "
            "CA's -> default, the certificate beats the SNI and the path")

    def test_openssl_no_resumption(self):
        """openssl s_client -cert over DoT: the handshake names kid-7, and
        no session ticket comes (s_client -sess_out saves nothing).  A
        ticket from a replica without tls.client-ca that shares the
        tls.ticket-key-file (it resumes there: the control) does not
        resume here either: no ticket stands in for a certificate."""
        keyfile = os.path.join(self.pki, "ticket.key")
        with open(keyfile, "wb") as f:
            f.write(os.urandom(80))
        cfg = h.doh_config(tls={"client-ca": self.ca, "ticket-key-file": keyfile})
        cfg["log-level"] = "debug"
        dv = h.Dnsveil(listen=["dns", "tls"], upstream=[self.ub], config=cfg, name="mtls-sess")
        self._dnsveils.append(dv)
        dv.start()
        sess = os.path.join(self.pki, "sess.pem")
        cert = ["-cert", self.kid7[0], "-key", self.kid7[1], "-CAfile", h.CA,
                "-alpn", "dot"]
        rc, out = h.s_client(dv.tls_port, *cert, "-sess_out", sess, hold=0.5)
        self.assertIn("Verify return code: 0 (ok)", out)
        self.assertFalse(os.path.exists(sess), "a session ticket came")
        dv.wait_log(r"alpn dot, cert kid-7")
        # the control: the same key file without tls.client-ca issues a
        # ticket, and the same client resumes with it there
        plain = h.Dnsveil(listen=["dns", "tls"], upstream=[self.ub], name="mtls-plain",
                          config=h.dot_config(tls={"ticket-key-file": keyfile}))
        self._dnsveils.append(plain)
        plain.start()
        h.s_client(plain.tls_port, *cert, "-sess_out", sess, hold=0.5)
        rc, out = h.s_client(plain.tls_port, *cert, "-sess_in", sess)
        self.assertIn("Reused, TLS", out)
        # the ticket decrypts with the shared key but is not honoured
        rc, out = h.s_client(dv.tls_port, *cert, "-sess_in", sess)
        self.assertIn("New, TLS", out)
        self.assertNotIn("Reused, TLS", out)
        h.wait_for(lambda: len(dv.log_lines(r"alpn dot, cert kid-7")) == 2, h.scaled(5),
                   what="a second full handshake with the certificate")
        self.assertEqual(dv.log_lines(r"alpn dot, resumed"), [])
        log("ok: openssl s_client -cert: cert kid-7, no ticket, a shared-key ticket from a "
            "replica without client-ca not honoured (it resumes there)")

    def test_require(self):
        """tls.client-cert require: only a certificate under the client CA
        gets through, on DoT, DoH and DoQ; none, or another CA's, fails the
        handshake (no answer).  Do53 is not affected."""
        dv = self.start_dv("require")
        h.wait_for(lambda: self.dot(dv, self.kid7) == [KIDS], h.scaled(10), what="DoT")
        self.assertEqual(h.kdig(dv.port, NAME).status, "NOERROR")
        for proto in (self.dot, self.doh, self.doq):
            with self.subTest(proto=proto.__name__):
                self.assertEqual(proto(dv, self.kid7), [KIDS])
                self.assertEqual(proto(dv, self.kid8), [KIDS])
                self.assertIsNone(proto(dv))
                self.assertIsNone(proto(dv, self.rogue))
        st = dv.stats()
        self.assertGreaterEqual(st["tls_failed"], 4, st)
        log("ok: require: kid-7/kid-8 served, no certificate and another CA's refused")

    def test_reload(self):
        """SIGHUP reads tls.client-ca again: a file that no longer holds a
        certificate refuses the reload (the old CA stays: kid-7 is still
        kids); the other CA's certificate in its place is taken, after which
        the other CA's kid-7 is kids and the first CA's names no one."""
        dv = self.start_dv("optional")
        self.assertEqual(self.dot(dv, self.kid7), [KIDS])
        with open(self.ca, "w") as f:
            f.write("not a certificate\n")
        dv.proc.send_signal(signal.SIGHUP)
        dv.wait_log(r"SIGHUP: configuration refused.*tls\.client-ca: ")
        self.assertEqual(self.dot(dv, self.kid7), [KIDS])
        self.assertEqual(self.doq(dv, self.kid7), [KIDS])
        shutil.copy(os.path.join(self.pki, "rogue.pem"), self.ca)
        dv.proc.send_signal(signal.SIGHUP)
        dv.wait_log(r"SIGHUP: TLS certificate .* reloaded")
        for proto in (self.dot, self.doh, self.doq):
            with self.subTest(proto=proto.__name__):
                self.assertEqual(proto(dv, self.rogue), [KIDS])
                self.assertEqual(proto(dv, self.kid7), [DEFAULT])
        log("ok: reload reads tls.client-ca again; a broken file is refused")

    def test_check_config(self):
        """--check-config: a tls.client-ca that is missing or holds no
        certificate is an error naming the key; a good one passes."""
        junk = os.path.join(self.pki, "junk.pem")
        with open(junk, "w") as f:
            f.write("not a certificate\n")
        for path, why in ((os.path.join(self.pki, "none.pem"), "No such file"),
                          (junk, "tls.client-ca")):
            cfg = h.dot_config(tls={"client-ca": path})
            dv = h.Dnsveil(listen=["dns", "tls", "quic"], config=cfg, name="mtls-check",
                           upstream=["udp://127.0.0.1:%d" % h.free_port()],
                           extra_args=["--check-config"])
            self.addCleanup(shutil.rmtree, dv.dir, True)
            r = h.run_dnsveil(dv.args)
            self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertRegex(r.stderr, r"tls\.client-ca: .*%s" % re.escape(why)
                             if why == "No such file" else r"tls\.client-ca: ")
        cfg = h.dot_config(tls={"client-ca": self.ca, "client-cert": "require"})
        dv = h.Dnsveil(listen=["dns", "tls", "quic"], config=cfg, name="mtls-check",
                       upstream=["udp://127.0.0.1:%d" % h.free_port()],
                       extra_args=["--check-config"])
        self.addCleanup(shutil.rmtree, dv.dir, True)
        r = h.run_dnsveil(dv.args)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        log("ok: --check-config checks tls.client-ca")


if __name__ == "__main__":
    h.main()
