#!/usr/bin/python3
"""The policy (README "Policy"): device identity, groups and block/allow
lists, through real clients: kdig over DoT with the client ID in the TLS
SNI (+tls-sni=kid-1.dns.test against a certificate for *.dns.test),
dnsveil-doq over DoQ likewise (--name kid-1.dns.test), curl
as a DoH client with the ID in the path (--doh-url .../dns-query/kid-1 and
raw DoH GETs), kdig over DoH, and Do53 clients told apart by the source
address they bind (kdig -b, dnspython source=).

One dnsveil, one Unbound (zone example.test: h0..h999, *.wild), three list
files (hosts, adblock, domains) with bad lines, and these groups:

  default  block [ads, adb], allow [okay]           nxdomain
  kids     block [ads, adult]                       null     (id kid-*)
  lab      block [ads]                              192.0.2.7 / 2001:db8::7
                                                             (127.0.0.2)
  nodata   block [ads]                              nodata   (127.0.0.3)
  guests   block [ads]                              refused  (the second
                                                             UDP listener)
with policy.clients-only: an ID no clients: id entry matches is refused."""

import os
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402
from dvtest.doh import CURL, b64url, curl  # noqa: E402

import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

h.ensure_dev_certs()

ADS = """# hosts format, with the host's own names and bad lines
127.0.0.1 localhost
::1 ip6-localhost
0.0.0.0 h1.example.test h2.example.test
0.0.0.0 wild.example.test
0.0.0.0 bad..name.example.test
not-an-address h3.example.test
0.0.0.0
"""
ADB = """[Adblock Plus 2.0]
! adblock format
||h4.example.test^
@@||ok.h4.example.test^
||h5.example.test^$third-party
example.test##.banner
/banner/ads/*
||bad..name^
"""
OKAY = """# domains format: never blocked for the default group
ok.wild.example.test
"""
ADULT = "h6.example.test\n"

EDE_BLOCKED, EDE_PROHIBITED = 15, 18


class Policy(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        self.tmp = tempfile.mkdtemp(prefix="dv-policy-")
        files = {}
        for name, text in (("ads", ADS), ("adb", ADB), ("okay", OKAY), ("adult", ADULT)):
            files[name] = os.path.join(self.tmp, name + ".txt")
            with open(files[name], "w") as f:
                f.write(text)
        self.guest_port = h.free_port()
        guest_url = "udp://127.0.0.1:%d" % self.guest_port
        self.guest_quic_port = h.free_port()
        guest_quic = "quic://127.0.0.1:%d" % self.guest_quic_port
        extra = """lists:
  ads: { source: %s, format: hosts }
  adb: { source: %s, format: adblock }
  okay: { source: %s, format: domains }
  adult: { source: %s, format: domains }
groups:
  default:
    block: [ads, adb]
    allow: [okay]
  kids:
    block: [ads, adult]
    action: null
    blocked-ttl: 60
  lab:
    block: [ads]
    action: [192.0.2.7, "2001:db8::7"]
  nodata: { block: [ads], action: nodata }
  guests: { block: [ads], action: refused }
clients:
  - { id: "kid-*", group: kids }
  - { id: laptop-42, group: default }
  - { cidr: 127.0.0.2, group: lab }
  - { cidr: [127.0.0.3/32], group: nodata }
  - { listener: "%s", group: guests }
  - { listener: "%s", group: guests }
policy:
  server-names: [dns.test]
  clients-only: true
""" % (files["ads"], files["adb"], files["okay"], files["adult"], guest_url, guest_quic)
        cfg = h.doh_config()
        cfg["log-level"] = "debug"
        self.dv = h.Dnsveil(listen=["dns", "tls", "https", "quic", guest_url, guest_quic], upstream=[self.ub],
                            config=cfg, extra_yaml=extra, name="policy")
        self._dnsveils.append(self.dv)
        self.dv.start()

    def tearDown(self):
        super().tearDown()
        subprocess.run(["rm", "-rf", self.tmp])

    # ---- clients

    def udp(self, name, rdtype="A", source="127.0.0.1", port=None):
        q = h.make_query(name, rdtype)
        return dns.query.udp(q, "127.0.0.1", port=port or self.dv.port, source=source,
                             timeout=h.scaled(3))

    def doh_get(self, path, name, rdtype="A"):
        """A DoH GET by curl to `path`; the DNS answer."""
        wire = h.make_query(name, rdtype).to_wire()
        r = curl("--http2", "https://127.0.0.1:%d%s?dns=%s" % (
            self.dv.https_port, path, b64url(wire)))
        self.assertEqual(r.status, 200, "%s: %r" % (path, r))
        return dns.message.from_wire(r.body)

    def dot(self, sni, name, rdtype="A"):
        """kdig over DoT, verifying the test CA for dns.test, sending `sni`."""
        opts = ["+edns"] + (["+tls-sni=%s" % sni] if sni else [])
        return h.kdig_tls(self.dv.tls_port, [(name, rdtype)], *opts)

    def assert_blocked(self, msg, rcode, lst, answers=None, ttl=None):
        self.assertEqual(msg.rcode(), rcode, msg.to_text())
        self.assertEqual(h.ede_codes(msg), [EDE_BLOCKED], msg.to_text())
        texts = [o.text for o in msg.options if int(o.otype) == 15]
        self.assertEqual(texts, ["blocked by list " + lst])
        if answers is not None:
            self.assertEqual(sorted(x[3] for x in h.rrset_texts(msg)), sorted(answers))
        if ttl is not None:
            for rrset in msg.answer + msg.authority:
                self.assertEqual(rrset.ttl, ttl)

    def assert_passed(self, msg, answers):
        self.assertEqual(msg.rcode(), dns.rcode.NOERROR, msg.to_text())
        self.assertEqual(h.ede_codes(msg), [])
        self.assertEqual(h.a_records(msg), answers)

    # ---- tests

    def test_default_group_lists(self):
        """Do53 from 127.0.0.1: the default group, NXDOMAIN with EDE 15
        naming the list and an SOA carrying blocked-ttl; subdomains follow
        their parent; the allow list and the adblock exception beat a block
        rule; other rule kinds and bad lines are counted, not fatal."""
        m = self.udp("h1.example.test")
        self.assert_blocked(m, dns.rcode.NXDOMAIN, "ads", ttl=300)
        self.assertEqual(m.authority[0].name.to_text(), "h1.example.test.")
        m = self.udp("deep.sub.wild.example.test")
        self.assert_blocked(m, dns.rcode.NXDOMAIN, "ads")
        self.assertEqual(m.authority[0].name.to_text(), "wild.example.test.")
        # allow list (okay) over block list (ads) for ok.wild and below
        self.assert_passed(self.udp("ok.wild.example.test"), ["192.0.2.99"])
        self.assert_passed(self.udp("x.ok.wild.example.test"), ["192.0.2.99"])
        # adblock: ||h4^ blocks, @@||ok.h4^ excepts, $options skipped
        self.assert_blocked(self.udp("h4.example.test"), dns.rcode.NXDOMAIN, "adb")
        self.assertEqual(self.udp("ok.h4.example.test").rcode(), dns.rcode.NXDOMAIN)
        self.assertEqual(h.ede_codes(self.udp("ok.h4.example.test")), [])
        self.assert_passed(self.udp("h5.example.test"), [h.host_addr(5)])
        # not in the default group's lists
        self.assert_passed(self.udp("h6.example.test"), [h.host_addr(6)])
        self.assert_passed(self.udp("www.example.test"), ["192.0.2.1"])
        st = self.dv.stats()["policy"]
        self.assertEqual(st["lists"]["ads"]["rules"], 3)
        self.assertEqual(st["lists"]["ads"]["bad_lines"], 3)
        self.assertEqual(st["lists"]["ads"]["skipped"], 2)
        self.assertEqual(st["lists"]["adb"]["rules"], 2)
        self.assertEqual(st["lists"]["adb"]["exceptions"], 1)
        self.assertEqual(st["lists"]["adb"]["skipped"], 3)
        self.assertEqual(st["lists"]["adb"]["bad_lines"], 1)
        g = st["groups"]["default"]
        self.assertEqual((g["blocked"], g["allowed"]), (3, 4))
        self.assertGreaterEqual(g["queries"], 10)
        self.assertEqual(st["lists"]["okay"]["allowed"], 2)
        self.assertEqual(st["lists"]["adb"]["allowed"], 2)
        self.dv.wait_log(r"policy: client 127\.0\.0\.1 id - group default: blocked "
                         r"h1\.example\.test list ads")

    def test_groups_by_address_and_listener(self):
        """Do53 clients told apart by the address they bind (kdig -b and
        dnspython) and by the listener: the given addresses, NODATA,
        REFUSED, each with EDE 15; no EDE for a client without EDNS."""
        m = self.udp("h2.example.test", source="127.0.0.2")
        self.assert_blocked(m, dns.rcode.NOERROR, "ads", answers=["192.0.2.7"], ttl=300)
        m = self.udp("h2.example.test", "AAAA", source="127.0.0.2")
        self.assert_blocked(m, dns.rcode.NOERROR, "ads", answers=["2001:db8::7"])
        r = h.kdig(self.dv.port, "h2.example.test", "A", "-b", "127.0.0.2")
        self.assertEqual(h.kdig_answers(r), [("h2.example.test.", ["192.0.2.7"])], r)
        m = self.udp("h2.example.test", source="127.0.0.3")
        self.assert_blocked(m, dns.rcode.NOERROR, "ads", answers=[])
        self.assertEqual(m.authority[0].rdtype, dns.rdatatype.SOA)
        m = self.udp("h2.example.test", port=self.guest_port)
        self.assert_blocked(m, dns.rcode.REFUSED, "ads")
        # the same names pass where no rule applies
        self.assert_passed(self.udp("h7.example.test", source="127.0.0.2"),
                           [h.host_addr(7)])
        # a client without EDNS gets no OPT, so no EDE
        q = h.make_query("h2.example.test", edns=None)
        m = dns.query.udp(q, "127.0.0.1", port=self.dv.port, source="127.0.0.3",
                          timeout=h.scaled(3))
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        self.assertEqual(m.edns, -1)
        st = self.dv.stats()["policy"]["groups"]
        self.assertEqual(st["lab"]["blocked"], 3)
        self.assertEqual(st["nodata"]["blocked"], 2)
        self.assertEqual(st["guests"]["blocked"], 1)

    def test_dot_client_id_in_sni(self):
        """kdig over DoT with +tls-sni=kid-1.dns.test (the certificate
        covers *.dns.test): the kids group, the null address with TTL 60;
        the bare server name is the default group; an ID no clients: entry
        matches is refused with EDE 18; a blocked answer for one group is
        never served from the cache to another."""
        r = self.dot("kid-1.dns.test", "h6.example.test")
        self.assertEqual(r.status, "NOERROR", r)
        self.assertEqual(r.records(), [("h6.example.test.", "A", 60, "0.0.0.0")], r)
        r = self.dot("kid-1.dns.test", "h6.example.test", "AAAA")
        self.assertEqual([x[3] for x in r.records()], ["::"], r)
        # the default group does not block h6: the upstream's answer,
        # not the kids' null address from any cache
        r = self.dot("dns.test", "h6.example.test")
        self.assertEqual(r.records(), [("h6.example.test.", "A", 300, h.host_addr(6))], r)
        r = self.dot(None, "h1.example.test")
        self.assertEqual(r.status, "NXDOMAIN", r)
        # and back: the kid still gets the null address
        r = self.dot("KID-1.dns.test", "h6.example.test")
        self.assertEqual([x[3] for x in r.records()], ["0.0.0.0"], r)
        # several queries on one connection (worked out once per
        # connection): each the kids' answer
        before = self.dv.stats()
        r = h.kdig_tls(self.dv.tls_port, [("h6.example.test", "A"), ("h1.example.test", "A"),
                                          ("h7.example.test", "A")],
                       "+edns", "+keepopen", "+tls-sni=kid-1.dns.test")
        self.assertEqual(h.kdig_answers(r), [("h6.example.test.", ["0.0.0.0"]),
                                             ("h1.example.test.", ["0.0.0.0"]),
                                             ("h7.example.test.", [h.host_addr(7)])], r)
        self.assertEqual(self.dv.stats()["tls_handshakes"] - before["tls_handshakes"], 1)
        # a known exact ID: default group
        r = self.dot("laptop-42.dns.test", "h6.example.test")
        self.assertEqual([x[3] for x in r.records()], [h.host_addr(6)], r)
        # unknown ID: REFUSED, EDE 18 (kdig prints the EDE in its text)
        r = self.dot("stranger.dns.test", "h6.example.test")
        self.assertEqual(r.status, "REFUSED", r)
        t = h.kdig_tls(self.dv.tls_port, [("h6.example.test", "A")], "+edns",
                       "+tls-sni=stranger.dns.test", "+nojson")
        self.assertIn("EDE: 18 (Prohibited)", t.stdout, t)
        self.assertEqual(self.dv.stats()["policy"]["refused_unknown_id"], 2)
        self.dv.wait_log(r"policy: client 127\.0\.0\.1 id kid-1 group kids: blocked "
                         r"h6\.example\.test list adult")

    def test_stubby_client_id_in_tls_auth_name(self):
        """stubby, Android Private DNS's strict profile, with tls_auth_name
        kid-3.dns.test: it verifies the wildcard certificate for that name
        and sends it as the SNI, so the kids group answers (the null
        address for a name on the adult list); with laptop-42.dns.test the
        default group (the upstream's answer); with an ID no clients:
        entry matches, REFUSED."""
        def through(auth_name, name):
            stub = h.Stubby(self.dv.tls_port, auth_name=auth_name)
            try:
                stub.start()
                r = h.kdig(stub.port, name, "A", timeout=h.scaled(5))
                text = stub.log_text()
            finally:
                stub.stop(keep=self._failure_count() > self._failures_at_start)
            self.assertNotIn("Verify failed", text, "stubby (%s):\n%s" % (auth_name, text))
            self.assertIn("Verify passed", text, "stubby (%s):\n%s" % (auth_name, text))
            return r
        r = through("kid-3.dns.test", "h6.example.test")
        self.assertEqual((r.status, r.records()), ("NOERROR", [("h6.example.test.", "A", 60,
                                                                "0.0.0.0")]), r)
        r = through("laptop-42.dns.test", "h6.example.test")
        self.assertEqual([x[3] for x in r.records()], [h.host_addr(6)], r)
        r = through("stranger.dns.test", "h6.example.test")
        self.assertEqual(r.status, "REFUSED", r)
        self.dv.wait_log(r"policy: client 127\.0\.0\.1 id kid-3 group kids: blocked "
                         r"h6\.example\.test list adult")

    def test_doq_client_id_in_sni(self):
        """dnsveil-doq with --name kid-1.dns.test (the SNI; the certificate
        covers *.dns.test): the kids group over DoQ too; the bare server
        name is the default group; an unknown ID is refused."""
        def ask(sni, name):
            r = self.dv.doq("--name", sni, "--ca", h.CA, trust=False, names=(name, "A"))
            self.assertEqual(len(r.answers), 1, r)
            return r.answers[0]
        a = ask("kid-1.dns.test", "h6.example.test")
        self.assertEqual(a["rcode"], "NOERROR", a)
        self.assertEqual([x.split()[-1] for x in a["answers"]], ["0.0.0.0"], a)
        self.assertEqual(a["answers"][0].split()[1], "60", a)
        a = ask("dns.test", "h6.example.test")
        self.assertEqual([x.split()[-1] for x in a["answers"]], [h.host_addr(6)], a)
        a = ask("stranger.dns.test", "h6.example.test")
        self.assertEqual(a["rcode"], "REFUSED", a)
        # a DoQ listener a clients: entry names: its group (guests: REFUSED)
        r = h.Doq(self.guest_quic_port, ("--name", "dns.test", "--ca", h.CA), trust=False,
                  names=("h2.example.test", "A"))
        self.assertEqual([a["rcode"] for a in r.answers], ["REFUSED"], r)
        r = h.Doq(self.guest_quic_port, ("--name", "dns.test", "--ca", h.CA), trust=False,
                  names=("h7.example.test", "A"))
        self.assertEqual([a["rcode"] for a in r.answers], ["NOERROR"], r)
        self.dv.wait_log(r"policy: client 127\.0\.0\.1 id kid-1 group kids: blocked "
                         r"h6\.example\.test list adult")

    def test_doh_client_id_in_path(self):
        """DoH with the client ID in the path: raw GETs by curl, curl's own
        resolver (--doh-url), kdig +https; the listener's path alone is the
        default group; a segment that is no DNS label is a 404."""
        m = self.doh_get("/dns-query/kid-7", "h1.example.test")
        self.assert_blocked(m, dns.rcode.NOERROR, "ads", answers=["0.0.0.0"], ttl=60)
        m = self.doh_get("/dns-query", "h1.example.test")
        self.assert_blocked(m, dns.rcode.NXDOMAIN, "ads")
        m = self.doh_get("/dns-query/laptop-42", "h6.example.test")
        self.assert_passed(m, [h.host_addr(6)])
        m = self.doh_get("/dns-query/stranger", "h6.example.test")
        self.assertEqual(m.rcode(), dns.rcode.REFUSED)
        self.assertEqual(h.ede_codes(m), [EDE_PROHIBITED])
        r = curl("https://127.0.0.1:%d/dns-query/not_a_label?dns=%s" % (
            self.dv.https_port, b64url(h.make_query("h6.example.test").to_wire())))
        self.assertEqual(r.status, 404, r)

        # curl resolving through dnsveil: a blocked name for the kid is the
        # null address (connecting fails), for the default group NXDOMAIN
        # (resolving fails); an allowed name resolves (connecting to the
        # documentation address is not attempted: --connect-to none)
        def fetch(path, host):
            url = "https://127.0.0.1:%d%s" % (self.dv.https_port, path)
            cmd = [CURL, "-sS", "--cacert", h.CA, "--doh-url", url, "--max-time",
                   str(int(h.scaled(10))), "--connect-timeout", "2", "-o", "/dev/null",
                   "http://%s:9/" % host]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=h.scaled(30))
            log("curl --doh-url %s http://%s:9/: exit %d %s" % (path, host, r.returncode,
                                                               r.stderr.strip()))
            return r.returncode, r.stderr
        rc, err = fetch("/dns-query", "h1.example.test")
        self.assertEqual(rc, 6, err)  # could not resolve host
        rc, err = fetch("/dns-query/kid-7", "h1.example.test")
        self.assertEqual(rc, 7, err)  # resolved (0.0.0.0), could not connect
        self.assertNotIn("resolve", err.lower())
        # kdig's DoH client with the path
        r = h.kdig_tls(self.dv.https_port, [("h1.example.test", "A")],
                       "+https=/dns-query/kid-7")
        self.assertEqual([x[3] for x in r.records()], ["0.0.0.0"], r)
        st = self.dv.stats()["policy"]
        self.assertGreaterEqual(st["groups"]["kids"]["blocked"], 3)
        self.dv.wait_log(r"policy: client 127\.0\.0\.1 id kid-7 group kids: blocked")


class PolicyConfig(h.IntegrationTest):
    """`dnsveil --check-config` on policy tables: errors say FILE:LINE:
    KEY: reason; a good file reads its lists and logs their counts."""

    def check(self, text):
        return h.check_config_text(text, files={"l.txt": "0.0.0.0 h1.example.test\nbad line here\n"})

    def test_errors_and_counts(self):
        rc, out = self.check("lists:\n  l: { source: @DIR@/l.txt, format: hosts }\n"
                             "groups:\n  kids:\n    block: [l, nope]\n")
        self.assertEqual(rc, 1, out)
        self.assertIn("FILE:8: groups.kids.block: unknown list 'nope'", out)
        rc, out = self.check("lists:\n  l: { source: \"ftp://lists.example/l.txt\" }\n")
        self.assertEqual(rc, 1, out)
        self.assertIn("FILE:5: lists.l.source: 'ftp://lists.example/l.txt': a file path, or an "
                      "http:// or https:// URL", out)
        # a URL is not fetched by a check: its copy on disk is read, none here
        rc, out = self.check("lists:\n  l: { source: \"https://lists.example/l.txt\" }\n"
                             "policy: { cache-dir: @DIR@/cache }\n")
        self.assertEqual(rc, 0, out)
        self.assertIn("policy: list l: no copy kept in", out)
        rc, out = self.check("clients:\n  - { id: kid-1, group: kids }\n")
        self.assertEqual(rc, 1, out)
        self.assertIn("FILE:5: clients.group: unknown group 'kids'", out)
        rc, out = self.check("lists:\n  l: { source: @DIR@/missing.txt }\n")
        self.assertEqual(rc, 1, out)
        self.assertIn("lists.l.source:", out)
        self.assertIn("No such file", out)
        rc, out = self.check("lists:\n  l: { source: @DIR@/l.txt, format: hosts }\n"
                             "groups:\n  default: { block: [l], action: null }\n")
        self.assertEqual(rc, 0, out)
        self.assertIn("configuration OK", out)
        self.assertRegex(out, r"policy: list l \(.*l\.txt\): 1 rules \(0 exceptions\), "
                              r"1 bad lines")


if __name__ == "__main__":
    h.main()
