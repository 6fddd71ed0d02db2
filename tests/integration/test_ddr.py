#!/usr/bin/python3
"""DDR, Discovery of Designated Resolvers (RFC 9462): dnsveil answers
_dns.resolver.arpa SVCB with its tls://, https:// and quic:// listeners
(DoT priority 1, DoH 2 with dohpath, DoQ 3), and _dns.{server name} the
same way; every other name and type under resolver.arpa gets NODATA (AA,
a resolver.arpa SOA), never the upstream's answer.

With ddr.mode auto (the default) the SVCB is answered only on listeners
whose address is one of the certificate's IP SANs (RFC 9462 4.2: the
client checks that): the dev certificate has IP:127.0.0.1, so 127.0.0.1
answers and 127.0.0.2 gets NODATA; a certificate of our own without IP
SANs turns it off on 127.0.0.1 too (with a start-up line saying why), and
ddr.mode on answers all the same.

Clients: kdig (prints the SVCB parameters), dnspython (parses the rdata),
kdig +tls and +https and dnsveil-doq asking over the encrypted listeners,
and kdig +tls / +https connecting where the answer says, checking the
certificate against the target name."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.rdtypes.svcbbase as svcb  # noqa: E402
import dvtest as h  # noqa: E402

h.ensure_dev_certs()

DDR = "_dns.resolver.arpa"
WWW = "www.example.test"
WWW_ADDR = "192.0.2.1"
KDIG = shutil.which("kdig", path="/usr/bin:/bin") or "kdig"


def svcb_records(msg):
    """{priority: (target, alpn ids, port, v4 hints, v6 hints, dohpath)}."""
    out = {}
    for rrset in msg.answer:
        if rrset.rdtype != dns.rdatatype.SVCB:
            continue
        for rd in rrset:
            p = rd.params
            out[rd.priority] = (
                rd.target.to_text(),
                tuple(x.decode() for x in p[svcb.ParamKey.ALPN].ids),
                p[svcb.ParamKey.PORT].port if svcb.ParamKey.PORT in p else None,
                tuple(str(a) for a in p[svcb.ParamKey.IPV4HINT].addresses)
                if svcb.ParamKey.IPV4HINT in p else (),
                tuple(str(a) for a in p[svcb.ParamKey.IPV6HINT].addresses)
                if svcb.ParamKey.IPV6HINT in p else (),
                p[7].value if 7 in p else None)
    return out


def soa_owner(msg):
    for rrset in msg.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return rrset.name.to_text()
    return None


def kdig_text(*args):
    r = subprocess.run([KDIG, "+retry=0", "+timeout=%d" % max(1, int(h.scaled(3)))] +
                       list(args), capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr


class DdrBase(h.IntegrationTest):
    CONFIG = {}
    CERT = None  # (cert, key) of our own; None: the dev certificate

    def start_dnsveil(self):
        self.ub = self.start_unbound(log_queries=False)
        self.second = h.free_port()
        listen = ["dns", "tls", "https", "quic", "dns://127.0.0.2:%d" % self.second]
        cfg = h.dot_config(**({"cert": self.CERT[0], "key": self.CERT[1]}
                              if self.CERT else {}))
        cfg.update(self.CONFIG)
        # the harness's readiness check trusts the test CA only: with a
        # certificate of our own, wait for the start line
        self.dv = h.Dnsveil(listen=listen, upstream=[self.ub], workers=1, name="ddr",
                            config=cfg, ready=not self.CERT)
        self._dnsveils.append(self.dv)
        self.dv.start()
        if self.CERT:
            self.dv.wait_log(r"ready, 1 workers")

    def expected(self):
        """The three records the listeners make."""
        return {
            1: ("dns.test.", ("dot",), self.dv.tls_port, ("127.0.0.1",), (), None),
            2: ("dns.test.", ("h2", "http/1.1"), self.dv.https_port, ("127.0.0.1",), (),
                (h.PATH + "{?dns}").encode()),
            3: ("dns.test.", ("doq",), self.dv.quic_port, ("127.0.0.1",), (), None),
        }

    def ask(self, name, rdtype="SVCB", host="127.0.0.1", port=None):
        return h.udp_query(port or self.dv.port, name, rdtype, host=host)

    def assertNodata(self, msg, owner="resolver.arpa."):
        self.assertEqual(msg.rcode(), 0, msg)
        self.assertEqual(msg.answer, [], msg)
        self.assertTrue(msg.flags & dns.flags.AA, msg)
        self.assertEqual(soa_owner(msg), owner, msg)


class DdrAuto(DdrBase):
    """The dev certificate: DNS:dns.test, IP:127.0.0.1 (and ::1)."""

    def setUp(self):
        super().setUp()
        self.start_dnsveil()

    def test_kdig_prints_the_records(self):
        out = kdig_text("@127.0.0.1", "-p", str(self.dv.port), DDR, "SVCB")
        self.assertIn("Flags: qr aa", out)
        self.assertRegex(out, r"SVCB\s+1 dns\.test\. alpn=dot port=%d ipv4hint=127\.0\.0\.1"
                         % self.dv.tls_port)
        self.assertRegex(out, r"SVCB\s+2 dns\.test\. alpn=h2,http/1\.1 port=%d "
                         r"ipv4hint=127\.0\.0\.1 key7=\"%s\{\?dns\}\""
                         % (self.dv.https_port, re.escape(h.PATH)))
        self.assertRegex(out, r"SVCB\s+3 dns\.test\. alpn=doq port=%d ipv4hint=127\.0\.0\.1"
                         % self.dv.quic_port)

    def test_dnspython_parses_the_rdata(self):
        for tcp in (False, True):
            msg = (h.tcp_query if tcp else h.udp_query)(self.dv.port, DDR, "SVCB")
            self.assertTrue(msg.flags & dns.flags.AA)
            self.assertEqual(svcb_records(msg), self.expected())
            self.assertEqual(msg.answer[0].ttl, 300)

    def test_over_dot_doh_and_doq(self):
        exp = self.expected()
        out = kdig_text("@127.0.0.1", "-p", str(self.dv.tls_port), "+tls",
                        "+tls-ca=%s" % h.CA, "+tls-hostname=dns.test", DDR, "SVCB")
        self.assertIn("status: NOERROR", out)
        self.assertEqual(len(re.findall(r"IN\s+SVCB\s+\d dns\.test\.", out)), 3, out)
        self.assertIn("alpn=dot port=%d" % self.dv.tls_port, out)
        out = kdig_text("@127.0.0.1", "-p", str(self.dv.https_port), "+https=" + h.PATH,
                        "+tls-ca=%s" % h.CA, "+tls-hostname=dns.test", DDR, "SVCB")
        self.assertEqual(len(re.findall(r"IN\s+SVCB\s+\d dns\.test\.", out)), 3, out)
        q = h.make_query(DDR, "SVCB")
        res = h.curl_post(self.dv, "https-h2", q.to_wire())
        self.assertEqual(res.status, 200)
        self.assertEqual(svcb_records(dns.message.from_wire(res.body)), exp)
        d = self.dv.doq(names=(DDR, "SVCB"))
        self.assertEqual(d.rc, 0, d)
        self.assertEqual(d.answers[0]["rcode"], "NOERROR", d.answers)
        self.assertEqual(len(d.answers[0]["answers"]), 3, d.answers)

    def test_clients_use_the_answer(self):
        """Connect where each record says, the certificate checked against
        the target name: DoT on the dot record's hint and port, DoH on the
        h2 record's with its dohpath."""
        recs = svcb_records(self.ask(DDR))
        target, _, port, v4, _, _ = recs[1]
        out = kdig_text("@" + v4[0], "-p", str(port), "+tls", "+tls-ca=%s" % h.CA,
                        "+tls-hostname=" + target.rstrip("."), WWW, "A")
        self.assertIn(WWW_ADDR, out)
        self.assertIn("(TCP)", out)
        target, alpn, port, v4, _, path = recs[2]
        path = path.decode().replace("{?dns}", "")
        out = kdig_text("@" + v4[0], "-p", str(port), "+https=" + path,
                        "+tls-ca=%s" % h.CA, "+tls-hostname=" + target.rstrip("."), WWW, "A")
        self.assertIn(WWW_ADDR, out)
        self.assertIn("HTTP session (HTTP/2-POST)-(dns.test%s)-(status: 200)" % path, out)

    def test_other_types_and_names_get_nodata(self):
        for name, rdtype in ((DDR, "A"), (DDR, "HTTPS"), ("resolver.arpa", "SOA"),
                             ("x." + DDR, "SVCB"), ("foo.resolver.arpa", "TXT")):
            msg = self.ask(name, rdtype)
            self.assertNodata(msg)
            self.assertEqual(msg.authority[0].ttl, 300)
        # a name only ending like it is not ours: the upstream's (REFUSED)
        msg = self.ask("xresolver.arpa", "A")
        self.assertEqual(msg.rcode(), 5, msg)

    def test_uncovered_address_gets_nodata(self):
        """127.0.0.2 is no IP SAN of the certificate: a client there could
        not verify the designation, so none is given."""
        self.assertNodata(self.ask(DDR, host="127.0.0.2", port=self.second))
        self.dv.wait_log(r"ddr: dns://127\.0\.0\.2:%d: not answered there \(NODATA\): the "
                         r"certificate has no IP SAN" % self.second)
        self.dv.wait_log(r"ddr: _dns\.resolver\.arpa and _dns\.dns\.test: SVCB dot:%d, h2:%d, "
                         r"doq:%d" % (self.dv.tls_port, self.dv.https_port, self.dv.quic_port))

    def test_designated_by_name(self):
        """_dns.dns.test (RFC 9462 5): verified by the name, so answered on
        every listener."""
        for host, port in (("127.0.0.1", self.dv.port), ("127.0.0.2", self.second)):
            msg = self.ask("_dns.DNS.test", host=host, port=port)
            self.assertEqual(svcb_records(msg), self.expected())
        self.assertNodata(self.ask("_dns.dns.test", "TXT"), owner="_dns.dns.test.")
        # a name that is not the server's passes on
        self.assertEqual(self.ask("_dns.other.test").rcode(), 5)


class OwnCert(DdrBase):
    """A certificate of our own without IP SANs."""

    def setUp(self):
        super().setUp()
        self.pki = tempfile.mkdtemp(prefix="dv-ddr-pki-")
        self.addCleanup(shutil.rmtree, self.pki, True)
        h.make_ca(self.pki, "ca", "dnsveil ddr test CA")
        type(self).CERT = h.make_leaf(self.pki, "noip", "ca", sans="DNS:dns.test")


class DdrNoIpSan(OwnCert):

    def test_off_without_ip_sans(self):
        self.start_dnsveil()
        self.assertNodata(self.ask(DDR))
        self.dv.wait_log(r"ddr: dns://127\.0\.0\.1:%d: not answered there \(NODATA\): the "
                         r"certificate has no IP SAN for its address" % self.dv.port)
        # --check-config says so too
        r = subprocess.run([self.dv.bin, "--check-config", "-c", self.dv.conf_path],
                           capture_output=True, text=True, timeout=60, cwd=self.dv.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stderr, r"ddr: tls://127\.0\.0\.1:%d: its address is not among the "
                         r"certificate's IP SANs: not advertised as a hint" % self.dv.tls_port)
        self.assertRegex(r.stderr, r"ddr: dns://127\.0\.0\.1:%d: not answered there"
                         % self.dv.port)
        # the hints it would give are left out, by name it still works
        recs = svcb_records(self.ask("_dns.dns.test"))
        self.assertEqual(sorted(recs), [1, 2, 3])
        self.assertEqual([r[3] for r in recs.values()], [(), (), ()])


class DdrOnNoIpSan(OwnCert):
    CONFIG = {"ddr": {"mode": "on", "ttl": 60}}

    def test_on_answers_anyway(self):
        self.start_dnsveil()
        for host, port in (("127.0.0.1", self.dv.port), ("127.0.0.2", self.second)):
            msg = self.ask(DDR, host=host, port=port)
            self.assertEqual(svcb_records(msg), self.expected())
            self.assertEqual(msg.answer[0].ttl, 60)


class DdrOff(DdrBase):
    CONFIG = {"ddr": {"mode": "off"}}

    def test_off_passes_it_on(self):
        self.start_dnsveil()
        # the test Unbound refuses what is not example.test
        self.assertEqual(self.ask(DDR).rcode(), 5)


class DdrServerName(DdrBase):
    CONFIG = {"ddr": {"server-name": "kid-1.dns.test"}}

    def test_wildcard_covers_the_name(self):
        self.start_dnsveil()
        recs = svcb_records(self.ask(DDR))
        self.assertEqual({r[0] for r in recs.values()}, {"kid-1.dns.test."})
        self.assertEqual(len(svcb_records(self.ask("_dns.kid-1.dns.test"))), 3)


if __name__ == "__main__":
    h.main()
