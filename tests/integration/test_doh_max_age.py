#!/usr/bin/python3
"""DoH HTTP freshness follows the DNS answer the client gets, capped the way
the cache caps it (RFC 8484 5.1): the first answer (a cache miss, straight
from the upstream) and the later ones (cache hits) alike.

The test's Unbound serves a zone ttl.test. whose SOA has TTL 86400 and
MINIMUM 10800 (so its NXDOMAIN answers carry a SOA with TTL 10800) and a
record with TTL 86400.  dnsveil runs with cache.negative-max-ttl 3600 and
cache.max-ttl 7200: curl's DoH GETs must see max-age <= 3600 for the
NXDOMAIN and <= 7200 for the record, equal to the smallest TTL of the DNS
answer in the body, on the first request and on the second."""

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


if __name__ == "__main__":
    h.main()
