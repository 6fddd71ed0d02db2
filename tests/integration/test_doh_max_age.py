#!/usr/bin/python3
"""DoH HTTP freshness follows the DNS answer the client gets, capped the way
the cache caps it (RFC 8484 5.1): the first answer (a cache miss, straight
from the upstream) and the later ones (cache hits) alike.

The test's Unbound serves a zone ttl.test. whose SOA has TTL 86400 and
MINIMUM 10800 (so its NXDOMAIN answers carry a SOA with TTL 10800) and a
record with TTL 86400.  dnsveil runs with cache.negative-max-ttl 3600 and
cache.max-ttl 7200: curl's DoH GETs must see max-age <= 3600 for the
NXDOMAIN and <= 7200 for the record, equal to the smallest TTL of the DNS
answer in the body, on the first request and on the second.

DohMaxAgeEveryAnswer: every other kind of answer over HTTP/2 and HTTP/1.1
(curl): a group's local record, a blocked name (NXDOMAIN with the
blocked-ttl SOA, and REFUSED for a group whose action is refused), a
SERVFAIL, and a stale answer (RFC 8767) while the only upstream is dead.
max-age is the smallest TTL of a NOERROR/NXDOMAIN answer (a negative one's
no longer than its SOA MINIMUM) and 0 for any other rcode: dnsveil takes it
from the core with the answer, and this pins that down for every path the
answer can take (policy, cache, upstream, stale, failure)."""

import os
import sys
import tempfile
import shutil

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402

ZONE = "ttl.test."
SOA_MINIMUM = 10800
LONG_TTL = 86400
NEG_MAX = 3600
MAX_TTL = 7200
LONG_ADDR = "192.0.2.77"


def zone_conf(d):
    """extra_server_conf for h.Unbound: the auth-zone ttl.test., answering
    clients directly (so its TTLs reach dnsveil as written)."""
    path = os.path.join(d, "ttl.test.zone")
    with open(path, "w") as f:
        f.write("\n".join([
            "$ORIGIN %s" % ZONE,
            "@ 86400 IN SOA ns.ttl.test. hostmaster.ttl.test. 1 3600 600 86400 %d"
            % SOA_MINIMUM,
            "@ 86400 IN NS ns.ttl.test.",
            "ns 86400 IN A 127.0.0.1",
            "long %d IN A %s" % (LONG_TTL, LONG_ADDR),
            "long2 %d IN A %s" % (LONG_TTL, LONG_ADDR),
        ]) + "\n")
    return """  local-zone: "{zone}" transparent

auth-zone:
  name: "{zone}"
  zonefile: "{path}"
  for-downstream: yes
  for-upstream: yes
  fallback-enabled: no
""".format(zone=ZONE, path=path)


def soa_ttl(m):
    soa = [rr for rr in m.authority if rr.rdtype == dns.rdatatype.SOA]
    return soa[0].ttl if soa else None


class DohMaxAge(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="dv-ttl-zone-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.ub = self.start_unbound(extra_server_conf=zone_conf(self.tmp))
        # what dnsveil is given: the SOA of an NXDOMAIN at 10800
        m = h.udp_query(self.ub.port, "nx." + ZONE)
        self.assertEqual(m.rcode(), dns.rcode.NXDOMAIN, "unbound: %s" % m)
        self.assertEqual(soa_ttl(m), SOA_MINIMUM, "unbound: %s" % m)
        m = h.udp_query(self.ub.port, "long." + ZONE)
        self.assertEqual(h.min_ttl(m), LONG_TTL, "unbound: %s" % m)
        self.dv = self.start_dnsveil(
            upstream=[self.ub], listen=["dns", "https"],
            config=h.doh_config(cache={"negative-max-ttl": NEG_MAX, "max-ttl": MAX_TTL}))

    def get(self, mode, name, what):
        """One DoH GET through curl: (the DNS answer, max-age)."""
        r = h.curl_get(self.dv, mode, h.query_wire(name))
        self.assertEqual((r.rc, r.status), (0, 200), "%s: %r" % (what, r))
        m = dns.message.from_wire(r.body)
        age = h.max_age(r.header("cache-control"))
        self.assertIsNotNone(age, "%s: no max-age: %r" % (what, r))
        ttl = h.min_ttl(m)
        # the HTTP freshness is the DNS answer's
        self.assertEqual(age, ttl, "%s: max-age %s, smallest TTL in the answer %s:\n%s" % (
            what, age, ttl, m))
        return m, age

    def check_negative(self, mode):
        name = "nx-%s.%s" % (mode, ZONE)
        for n in ("first (miss)", "second (hit)"):
            what = "%s NXDOMAIN, %s" % (mode, n)
            m, age = self.get(mode, name, what)
            self.assertEqual(m.rcode(), dns.rcode.NXDOMAIN, "%s: %s" % (what, m))
            self.assertLessEqual(age, NEG_MAX, "%s: max-age %d over negative-max-ttl %d" % (
                what, age, NEG_MAX))
            self.assertLessEqual(soa_ttl(m), NEG_MAX, "%s: SOA TTL over %d: %s" % (
                what, NEG_MAX, m))
            self.assertGreaterEqual(age, NEG_MAX - 5, "%s: max-age %d" % (what, age))
            log("%s: max-age %d, SOA TTL %d" % (what, age, soa_ttl(m)))

    def check_positive(self, mode, name):
        for n in ("first (miss)", "second (hit)"):
            what = "%s %s, %s" % (mode, name, n)
            m, age = self.get(mode, name, what)
            self.assertEqual(h.a_records(m), [LONG_ADDR], "%s: %s" % (what, m))
            self.assertLessEqual(age, MAX_TTL, "%s: max-age %d over max-ttl %d" % (
                what, age, MAX_TTL))
            self.assertGreaterEqual(age, MAX_TTL - 5, "%s: max-age %d" % (what, age))
            log("%s: max-age %d" % (what, age))

    def test_negative_h2(self):
        self.check_negative("https-h2")

    def test_negative_http1(self):
        self.check_negative("https-http1.1")

    def test_positive_over_max_ttl(self):
        self.check_positive("https-h2", "long." + ZONE)
        self.check_positive("https-http1.1", "long." + ZONE)

    def test_do53_first_answer_capped(self):
        """The DNS answer itself, on a miss, as the cache will serve it."""
        m = h.udp_query(self.dv.port, "long2." + ZONE)
        self.assertEqual(h.a_records(m), [LONG_ADDR], "%s" % m)
        self.assertEqual(h.min_ttl(m), MAX_TTL, "first answer over UDP: %s" % m)
        m = h.udp_query(self.dv.port, "nx2." + ZONE)
        self.assertEqual(m.rcode(), dns.rcode.NXDOMAIN, "%s" % m)
        self.assertEqual(soa_ttl(m), NEG_MAX, "first NXDOMAIN over UDP: %s" % m)


SHORT = "short.example.test"  # TTL 2 in the resolver's local data
BLOCKED = "ads.blocked.test"
BLOCKED_TTL = 240
RECORD_TTL = 123
MODES = ("https-h2", "https-http1.1")


def expected_age(m):
    """RFC 8484 5.1 for the DNS answer `m`: its smallest TTL; a negative
    answer's no longer than its SOA MINIMUM; 0 for other rcodes."""
    if m.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return 0
    age = h.min_ttl(m)
    if age is None:
        return 0
    if m.rcode() == dns.rcode.NXDOMAIN or not m.answer:
        for rr in m.authority:
            if rr.rdtype == dns.rdatatype.SOA:
                age = min(age, min(r.minimum for r in rr))
    return age


class DohMaxAgeEveryAnswer(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="dv-max-age-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        ads = os.path.join(self.tmp, "ads.txt")
        with open(ads, "w") as f:
            f.write(BLOCKED + "\n")
        self.ub = self.start_resolver(local_data=[(SHORT, 2, "A", "192.0.2.77")])
        extra = """lists:
  ads: { source: %s, format: domains }
groups:
  default:
    block: [ads]
    blocked-ttl: %d
    records:
      - "rec.corp.example. %d IN A 192.0.2.10"
  shut:
    block: [ads]
    action: refused
clients:
  - { id: "shut-*", group: shut }
""" % (ads, BLOCKED_TTL, RECORD_TTL)
        cache = {"stale-max-age-s": 3600, "stale-answer-timeout-ms": 500,
                 "servfail-ttl-s": 0}
        pool = {"query-timeout-ms": 1500, "timeout-ms": 700, "connections": 1,
                "reconnect-min-ms": 50, "reconnect-max-ms": 300}
        self.dv = self.start_dnsveil(upstream=[self.ub], listen=["dns", "https"],
                                     config=h.doh_config(cache=cache, pool=pool),
                                     extra_yaml=extra)

    def get(self, mode, name, what, path=None, rcode=None):
        """A DoH GET through curl -v: the DNS answer, after checking that
        its max-age is what RFC 8484 5.1 gives for it."""
        r = h.curl_get(self.dv, mode, h.query_wire(name), path=path, extra=("-v",))
        self.assertEqual((r.rc, r.status), (0, 200), "%s: %r" % (what, r))
        m = dns.message.from_wire(r.body)
        if rcode is not None:
            self.assertEqual(m.rcode(), rcode, "%s: %s" % (what, m))
        age = h.max_age(r.header("cache-control"))
        self.assertEqual(age, expected_age(m), "%s: max-age %s for:\n%s" % (what, age, m))
        log("%s: %s, max-age %d" % (what, dns.rcode.to_text(m.rcode()), age))
        return m, age

    def test_policy_answers(self):
        for mode in MODES:
            m, age = self.get(mode, "rec.corp.example", mode + " local record",
                              rcode=dns.rcode.NOERROR)
            self.assertEqual(age, RECORD_TTL)
            m, age = self.get(mode, BLOCKED, mode + " blocked", rcode=dns.rcode.NXDOMAIN)
            self.assertEqual(age, BLOCKED_TTL)
            m, age = self.get(mode, BLOCKED, mode + " blocked, action refused",
                              path=self.dv.path + "/shut-1", rcode=dns.rcode.REFUSED)
            self.assertEqual(age, 0)

    def test_stale_and_servfail(self):
        for mode in MODES:
            m, age = self.get(mode, SHORT, mode + " short-lived, from the upstream",
                              rcode=dns.rcode.NOERROR)
            self.assertLessEqual(age, 2)
        self.ub.kill()
        log("killed the only upstream")
        for mode in MODES:
            def stale():
                r = h.curl_get(self.dv, mode, h.query_wire(SHORT))
                if r.rc or r.status != 200:
                    return False
                return h.min_ttl(dns.message.from_wire(r.body)) == 30
            h.wait_for(stale, h.scaled(15), interval=0.2,
                       what="%s: the stale answer once %s expires" % (mode, SHORT))
            m, age = self.get(mode, SHORT, mode + " stale", rcode=dns.rcode.NOERROR)
            self.assertEqual(age, 30)
            m, age = self.get(mode, h.unique_label("gone") + ".example.test",
                              mode + " upstream dead", rcode=dns.rcode.SERVFAIL)
            self.assertEqual(age, 0)


if __name__ == "__main__":
    h.main()
