#!/usr/bin/python3
"""The AD bit through dnsveil (RFC 6840 5.7, 5.8): a client that asks for
authenticated data with AD alone gets AD=1 for a validated answer, one
that asks neither AD nor DO gets AD=0 (from the same cache entry), one with
DO gets AD=1 and the RRSIGs; an unsigned or a bogus name never gets AD.

The local Unbound validates: a zone signed.test. is signed at test time
with ldns-keygen and ldns-signzone (ldnsutils), served by the Unbound as an
auth-zone for its iterator, with the key as the trust anchor.  One record
of it (bogus.signed.test.) is changed after signing, so it fails
validation.  The names are under test. and nothing outside the test's
Unbound knows them (its root is a dead loopback port)."""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402

SIGNED = "signed.test."
LDNS_KEYGEN = shutil.which("ldns-keygen", path="/usr/bin:/bin") or "ldns-keygen"
LDNS_SIGNZONE = shutil.which("ldns-signzone", path="/usr/bin:/bin") or "ldns-signzone"
GOOD_ADDR = "192.0.2.10"
BOGUS_ADDR = "192.0.2.66"
FORGED_ADDR = "192.0.2.67"


def signed_zone(d):
    """Write signed.test. signed by a fresh key into `d`; return (the
    signed zone file, the trust anchor file)."""
    zone = os.path.join(d, "signed.test.zone")
    with open(zone, "w") as f:
        f.write("\n".join([
            "$ORIGIN %s" % SIGNED,
            "@ 3600 IN SOA ns.signed.test. hostmaster.signed.test. 1 3600 600 86400 300",
            "@ 3600 IN NS ns.signed.test.",
            "ns 3600 IN A 127.0.0.1",
            "www 300 IN A %s" % GOOD_ADDR,
            "www2 300 IN A %s" % GOOD_ADDR,
            "probe 300 IN A %s" % GOOD_ADDR,
            "bogus 300 IN A %s" % BOGUS_ADDR,
        ]) + "\n")
    r = subprocess.run([LDNS_KEYGEN, "-a", "ECDSAP256SHA256", "-k", SIGNED],
                       cwd=d, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError("ldns-keygen: %s %s" % (r.stdout, r.stderr))
    base = r.stdout.strip()
    r = subprocess.run([LDNS_SIGNZONE, zone, base], cwd=d, capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise AssertionError("ldns-signzone: %s %s" % (r.stdout, r.stderr))
    signed = zone + ".signed"
    # bogus.signed.test.: its RRSIG no longer matches
    with open(signed) as f:
        text = f.read()
    forged = text.replace(BOGUS_ADDR, FORGED_ADDR)
    if forged == text:
        raise AssertionError("no %s in the signed zone:\n%s" % (BOGUS_ADDR, text))
    with open(signed, "w") as f:
        f.write(forged)
    return signed, os.path.join(d, base + ".key")


def validating_conf(zonefile, anchor):
    """extra_server_conf for h.Unbound: validate, with `anchor`, the
    auth-zone signed.test. (from `zonefile`) that the iterator reads."""
    return """  module-config: "validator iterator"
  trust-anchor-file: "{anchor}"
  local-zone: "{zone}" transparent
  val-log-level: 2

auth-zone:
  name: "{zone}"
  zonefile: "{zonefile}"
  for-downstream: no
  for-upstream: yes
  fallback-enabled: no
""".format(anchor=anchor, zone=SIGNED, zonefile=zonefile)


def query(name, ad=False, do=False, cd=False, rdtype="A"):
    q = dns.message.make_query(name, rdtype, use_edns=0, payload=1232, want_dnssec=do)
    q.flags &= ~dns.flags.AD
    if ad:
        q.flags |= dns.flags.AD
    if cd:
        q.flags |= dns.flags.CD
    return q


def addrs(m):
    return [x[3] for x in h.rrset_texts(m) if x[1] == "A"]


def has_ad(m):
    return bool(m.flags & dns.flags.AD)


def rrsigs(m):
    return [rr for rr in m.answer if rr.rdtype == dns.rdatatype.RRSIG]


class DnssecAd(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="dv-dnssec-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        zonefile, anchor = signed_zone(self.tmp)
        self.ub = self.start_unbound(extra_server_conf=validating_conf(zonefile, anchor))
        # the Unbound itself validates, and gives AD to AD alone
        m = dns.query.udp(query("probe." + SIGNED, ad=True), "127.0.0.1", port=self.ub.port,
                          timeout=h.scaled(3))
        self.assertEqual(m.rcode(), dns.rcode.NOERROR, "unbound: %s" % m)
        self.assertTrue(has_ad(m), "the test's Unbound does not validate: %s\n%s" % (
            m, h.tail(self.ub.log)))
        self.dv = self.start_dnsveil(upstream=[self.ub], config=h.dot_config(),
                                     listen=["dns", "tls"])

    def udp(self, q):
        return dns.query.udp(q, "127.0.0.1", port=self.dv.port, timeout=h.scaled(3))

    def dot(self, q):
        s = h.tls_connect(self.dv.tls_port, timeout=h.scaled(3))
        try:
            return h.stream_query(s, q)[1]
        finally:
            s.close()

    def check_ad_rules(self, ask, name, what):
        """AD alone first (a miss), then neither (a hit on the same
        entry), then AD alone again (a hit): AD=1, AD=0, AD=1."""
        m1 = ask(query(name, ad=True))
        self.assertEqual(m1.rcode(), dns.rcode.NOERROR, "%s AD: %s" % (what, m1))
        self.assertEqual(addrs(m1), [GOOD_ADDR], "%s: %s" % (what, m1))
        self.assertTrue(has_ad(m1), "%s: AD asked, validated answer without AD: %s" % (what, m1))
        m2 = ask(query(name))
        self.assertEqual(m2.rcode(), dns.rcode.NOERROR, "%s plain: %s" % (what, m2))
        self.assertFalse(has_ad(m2), "%s: neither AD nor DO asked, got AD: %s" % (what, m2))
        self.assertFalse(rrsigs(m2), "%s: RRSIGs without DO: %s" % (what, m2))
        m3 = ask(query(name, ad=True))
        self.assertTrue(has_ad(m3), "%s: AD asked again (cached), no AD: %s" % (what, m3))
        # all three from one upstream answer: one cache entry for both
        time.sleep(0.3)  # let Unbound's query log catch up
        self.assertEqual(self.ub.queries_for(name, "A"), 1,
                         "%s: Unbound asked for %s more than once" % (what, name))
        # the other order: neither first (a miss), then AD (a hit)
        other = "www2." + SIGNED
        m4 = ask(query(other))
        self.assertEqual(m4.rcode(), dns.rcode.NOERROR, "%s plain: %s" % (what, m4))
        self.assertFalse(has_ad(m4), "%s: neither AD nor DO asked, got AD: %s" % (what, m4))
        m5 = ask(query(other, ad=True))
        self.assertTrue(has_ad(m5), "%s: AD asked after a plain query, no AD: %s" % (what, m5))
        # DO: AD and the signatures
        m6 = ask(query(name, do=True))
        self.assertTrue(has_ad(m6), "%s: DO asked, no AD: %s" % (what, m6))
        self.assertTrue(rrsigs(m6), "%s: DO asked, no RRSIG: %s" % (what, m6))
        m7 = ask(query(name, do=True, ad=True))
        self.assertTrue(has_ad(m7) and rrsigs(m7), "%s: DO+AD: %s" % (what, m7))
        log("%s: AD alone -> AD=%d, neither -> AD=%d, DO -> AD=%d with %d RRSIG set(s)" % (
            what, has_ad(m1), has_ad(m2), has_ad(m6), len(rrsigs(m6))))

    def check_never_ad(self, ask, what):
        # unsigned (outside the trust anchor): an answer, never AD
        for do in (False, True):
            m = ask(query("www.example.test.", ad=True, do=do))
            self.assertEqual(m.rcode(), dns.rcode.NOERROR, "%s unsigned: %s" % (what, m))
            self.assertFalse(has_ad(m), "%s: unsigned name with AD: %s" % (what, m))
        # bogus: SERVFAIL without AD; with CD the data, still without AD
        m = ask(query("bogus." + SIGNED, ad=True))
        self.assertEqual(m.rcode(), dns.rcode.SERVFAIL, "%s bogus: %s" % (what, m))
        self.assertFalse(has_ad(m), "%s: bogus with AD: %s" % (what, m))
        for do in (False, True):
            m = ask(query("bogus." + SIGNED, ad=True, cd=True, do=do))
            self.assertEqual(m.rcode(), dns.rcode.NOERROR, "%s bogus+CD: %s" % (what, m))
            self.assertEqual(addrs(m), [FORGED_ADDR],
                             "%s bogus+CD: %s" % (what, m))
            self.assertFalse(has_ad(m), "%s: bogus (CD) with AD: %s" % (what, m))

    def test_udp(self):
        self.check_ad_rules(self.udp, "www." + SIGNED, "Do53 UDP")
        self.check_never_ad(self.udp, "Do53 UDP")

    def test_dot(self):
        self.check_ad_rules(self.dot, "www." + SIGNED, "DoT")
        self.check_never_ad(self.dot, "DoT")


if __name__ == "__main__":
    h.main()
