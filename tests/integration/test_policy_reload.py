#!/usr/bin/python3
"""The policy reloads live (README "Reload"): groups, clients, lists,
records, internal names, policy.* and ddr.*, by SIGHUP and by POST /reload
on the admin listener, through real parts: the dnsveil binary, a real
Unbound as its upstream, dnspython over UDP and over one DoT connection
kept open across the reload, kdig, curl.

- A new config adds a block list, a group, a client rule (by address and
  by the client ID in the TLS SNI), local records; after SIGHUP the new
  answers come without a restart, while a bounded query loop running the
  whole time sees every answer either the old one or the new one (never a
  SERVFAIL, a timeout or anything else), and only new ones once the
  reload is logged; a DoT connection opened before the reload follows
  its new group (its memo of who it is is worked out again); the group's
  counters in /metrics go on across the reload.
- From a config without any policy, POST /reload (curl) brings one in; a
  record that does not parse, or a group naming an unknown list, refuses
  the whole reload with FILE:LINE: KEY: reason and the old policy still
  answers.
- DDR follows the certificate: ddr.mode auto answers _dns.resolver.arpa
  while the certificate has the listener's address as an IP SAN; a new
  certificate without IP SANs (SIGHUP) turns the answer into NODATA, and
  the first one back brings it back; ddr.server-name reloads too.
- RPZ local data of every type the local records have: kdig sees a CNAME
  rewrite (followed into the zone's own data), TXT and MX from an RPZ
  file.
"""

import os
import signal
import socket
import ssl
import sys
import threading
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

h.ensure_dev_certs()

WWW, WWW_ADDR = "www.example.test", "192.0.2.1"
INTRANET = "intranet.example.test"
BLOCKED = "h5.example.test"
EDE_BLOCKED = 15

BASE_POLICY = """groups:
  default:
    records:
      - "old.example.test. 300 IN A 192.0.2.50"
policy:
  server-names: [dns.test]
"""

NEW_POLICY = """lists:
  ads: { source: %(ads)s, format: domains }
groups:
  default:
    block: [ads]
    records:
      - "old.example.test. 300 IN A 192.0.2.50"
      - "intranet.example.test. 300 IN A 192.0.2.10"
  lab:
    records:
      - "intranet.example.test. 300 IN A 192.0.2.20"
clients:
  - { cidr: 127.0.0.2/32, group: lab }
  - { id: "lab*", group: lab }
policy:
  server-names: [dns.test]
"""



def summary(msg):
    """(rcode, sorted answer texts, EDE codes): what a client sees."""
    if msg is None:
        return None
    return (dns.rcode.to_text(msg.rcode()),
            tuple(sorted(rd for _n, _t, _ttl, rd in h.rrset_texts(msg))),
            tuple(h.ede_codes(msg)))


def ask(port, name, rdtype="A", source=None):
    q = h.make_query(name, rdtype)
    try:
        return dns.query.udp(q, "127.0.0.1", port=port, source=source,
                             timeout=h.scaled(2), ignore_trailing=True)
    except Exception as e:  # a timeout is a wrong answer here
        log("query %s from %s: %r" % (name, source, e))
        return None


class PolicyReloadBase(h.ReloadMixin, h.IntegrationTest):

    def start(self, policy, listen=("dns", "tls")):
        self.ub = self.start_unbound(log_queries=False)
        self.admin = h.free_port()
        self.dv = self.start_dnsveil(
            upstream=[self.ub], listen=list(listen), config=h.dot_config(),
            extra_yaml=("admin:\n  listen: [\"http://127.0.0.1:%d\"]\n" % self.admin) + policy)
        with open(self.dv.conf_path) as f:
            self.base = f.read()

class PolicyReload(PolicyReloadBase):

    def setUp(self):
        h.IntegrationTest.setUp(self)
        self.start(BASE_POLICY)
        self.ads = os.path.join(self.dv.dir, "ads.txt")
        with open(self.ads, "w") as f:
            f.write("# the test's block list\n%s\n" % BLOCKED)

    def dot_socket(self, sni):
        ctx = ssl.create_default_context(cafile=h.CA)
        ctx.set_alpn_protocols(["dot"])
        raw = socket.create_connection(("127.0.0.1", self.dv.tls_port), timeout=h.scaled(5))
        return ctx.wrap_socket(raw, server_hostname=sni)

    def dot_ask(self, sock, name):
        q = h.make_query(name)
        return dns.query.tls(q, "127.0.0.1", port=self.dv.tls_port, sock=sock,
                             timeout=h.scaled(5))

    def test_sighup_under_query_loop(self):
        # (query, source) -> the old answer, seen before the reload, and
        # the new one the new config must give
        probes = [(WWW, None), (INTRANET, None), (BLOCKED, None), (INTRANET, "127.0.0.2"),
                  ("old.example.test", None)]
        old = {p: summary(ask(self.dv.port, p[0], source=p[1])) for p in probes}
        new = {
            (WWW, None): old[(WWW, None)],
            (INTRANET, None): ("NOERROR", ("192.0.2.10",), ()),
            (BLOCKED, None): ("NXDOMAIN", (), (EDE_BLOCKED,)),
            (INTRANET, "127.0.0.2"): ("NOERROR", ("192.0.2.20",), ()),
            ("old.example.test", None): ("NOERROR", ("192.0.2.50",), ()),
        }
        log("before the reload: %r" % old)
        self.assertEqual(old[(WWW, None)], ("NOERROR", (WWW_ADDR,), ()))
        self.assertEqual(old[("old.example.test", None)], new[("old.example.test", None)])
        for p in ((INTRANET, None), (BLOCKED, None), (INTRANET, "127.0.0.2")):
            self.assertNotEqual(old[p], new[p], "%r must change with the reload" % (p,))
            self.assertNotEqual(old[p][0], "SERVFAIL", old)

        # a DoT connection with the client ID lab1 in its SNI, opened now
        # (group default) and kept across the reload
        dot = self.dot_socket("lab1.dns.test")
        self.addCleanup(dot.close)
        self.assertEqual(summary(self.dot_ask(dot, INTRANET)), old[(INTRANET, None)])

        seen = []  # (sent monotonic, probe, summary)
        stop = threading.Event()

        def loop():
            deadline = time.monotonic() + h.scaled(30)
            for i in range(4000):
                if stop.is_set() or time.monotonic() > deadline:
                    break
                p = probes[i % len(probes)]
                t = time.monotonic()
                seen.append((t, p, summary(ask(self.dv.port, p[0], source=p[1]))))

        t = threading.Thread(target=loop)
        t.start()
        try:
            h.wait_for(lambda: len(seen) >= 50, h.scaled(10), what="the query loop running")
            self.write_config(self.base.replace(BASE_POLICY, NEW_POLICY % {"ads": self.ads}))
            logged = self.hup()
            reloaded_at = time.monotonic()
            n_at_reload = len(seen)
            h.wait_for(lambda: len(seen) >= n_at_reload + 50, h.scaled(10),
                       what="the query loop after the reload")
        finally:
            stop.set()
            t.join(h.scaled(40))
        self.assertRegex(logged, r"SIGHUP: configuration checked and reloaded")
        self.assertRegex(logged, r"policy: reloaded \(generation 2\): 2 groups, 2 clients "
                         r"entries, 1 lists \(rules read again\), 3 local records")
        self.assertNotRegex(logged, r"takes effect on restart")
        wrong = [(s, p, a) for s, p, a in seen if a not in (old[p], new[p])]
        late = [(s, p, a) for s, p, a in seen if s > reloaded_at and a != new[p]]
        n_old = sum(1 for _s, p, a in seen if a == old[p] and old[p] != new[p])
        log("query loop: %d queries, %d old answers, %d new, %d neither, %d old after the "
            "reload was logged" % (len(seen), n_old, len(seen) - n_old - len(wrong),
                                   len(wrong), len(late)))
        self.assertEqual(wrong, [], "answers neither old nor new (SERVFAIL, timeouts...)")
        self.assertEqual(late, [], "old answers to queries sent after the reload")
        for p, want in new.items():
            self.assertEqual(summary(ask(self.dv.port, p[0], source=p[1])), want, p)

        # the DoT connection opened before: now in group lab by its ID
        self.assertEqual(summary(self.dot_ask(dot, INTRANET)), new[(INTRANET, "127.0.0.2")])
        r = h.kdig_tls(self.dv.tls_port, [(INTRANET, "A")], hostname="lab2.dns.test")
        self.assertEqual(h.kdig_answers(r), [(INTRANET + ".", ["192.0.2.20"])], repr(r))
        log("ok: a DoT connection opened before the reload and kdig +tls with SNI lab2 get "
            "the new group lab's record")

        # the default group's counters went on across the reload
        text = self.metrics()
        q = h.metric(text, 'dnsveil_policy_group_queries_total{group="default"}')
        b = h.metric(text, 'dnsveil_policy_group_blocked_total{group="default"}')
        n_default = sum(1 for _s, p, _a in seen if p[1] is None)
        log("/metrics: default group queries %s, blocked %s" % (q, b))
        self.assertGreaterEqual(q, n_default, "counted before and after the reload")
        self.assertGreater(b, 0)
        self.assertIsNotNone(h.metric(text, 'dnsveil_policy_group_queries_total{group="lab"}'))
        self.assertEqual(h.metric(text, 'dnsveil_policy_list_entries{list="ads"}'), 1)
        log("ok: SIGHUP applied a new list, group, client rules and records live; %d queries "
            "in the loop, none failed" % len(seen))

    def test_post_reload_refusals_keep_the_old_policy(self):
        good = self.base.replace(BASE_POLICY, NEW_POLICY % {"ads": self.ads})
        self.write_config(good)
        r = self.post_reload()
        self.assertEqual((r.status, r.body), (200, b"reloaded\n"), r)
        want = ("NOERROR", ("192.0.2.10",), ())
        self.assertEqual(summary(ask(self.dv.port, INTRANET)), want)

        bad_record = good.replace("intranet.example.test. 300 IN A 192.0.2.10",
                                  "intranet.example.test. 300 IN A 192.0.2.999")
        bad_list = good.replace("block: [ads]", "block: [ads, nosuchlist]")
        for text, key in ((bad_record, r"groups\.default\.records"),
                          (bad_list, r"groups\.default\.block")):
            self.write_config(text)
            r = self.post_reload()
            self.assertEqual(r.status, 500, r)
            self.assertRegex(r.body.decode(), r"configuration refused, the running one stays: "
                             r"\S+dnsveil\.yaml:\d+: %s: " % key)
            self.assertEqual(summary(ask(self.dv.port, INTRANET)), want)
            self.assertEqual(summary(ask(self.dv.port, BLOCKED)),
                             ("NXDOMAIN", (), (EDE_BLOCKED,)))
        # a list file that cannot be read: refused too, named
        self.write_config(good.replace(self.ads, self.ads + ".missing"))
        r = self.post_reload()
        self.assertEqual(r.status, 500, r)
        self.assertRegex(r.body.decode(), r"lists\.ads\.source: '\S+\.missing': ")
        self.assertEqual(summary(ask(self.dv.port, INTRANET)), want)
        self.assertEqual(h.metric(self.metrics(), "dnsveil_reload_failures_total"), 3)
        log("ok: a bad record, an unknown list and a missing list file refuse the reload "
            "(FILE:LINE: KEY: reason), and the policy in force still answers")


class PolicyFromNothing(PolicyReloadBase):

    def setUp(self):
        h.IntegrationTest.setUp(self)
        self.start("")

    def test_post_reload_brings_a_policy(self):
        self.assertNotEqual(summary(ask(self.dv.port, INTRANET))[1], ("192.0.2.10",))
        text = self.base + """groups:
  default:
    records:
      - "intranet.example.test. 300 IN A 192.0.2.10"
      - "intranet.example.test. 300 IN TXT \\"reloaded\\""
internal: [corp.example]
"""
        self.write_config(text)
        r = self.post_reload()
        self.assertEqual((r.status, r.body), (200, b"reloaded\n"), r)
        self.assertEqual(summary(ask(self.dv.port, INTRANET)), ("NOERROR", ("192.0.2.10",), ()))
        res = h.kdig(self.dv.port, INTRANET, "TXT")
        self.assertEqual([rd for _n, _t, _ttl, rd in res.records()], ['"reloaded"'], repr(res))
        self.assertTrue(res.aa, repr(res))
        log("ok: POST /reload brought groups and records to a dnsveil started without policy")


class DdrReload(PolicyReloadBase):

    def setUp(self):
        h.IntegrationTest.setUp(self)
        self.private_pki("dv-ddr-reload-")
        self.ub = self.start_unbound(log_queries=False)
        self.admin = h.free_port()
        self.dv = self.start_dnsveil(
            upstream=[self.ub], listen=["dns", "tls"], workers=1,
            config=h.dot_config(cert=self.cert, key=self.key),
            extra_yaml="admin:\n  listen: [\"http://127.0.0.1:%d\"]\n" % self.admin)
        with open(self.dv.conf_path) as f:
            self.base = f.read()

    def replace_pair(self, chain, key):
        for path, src in ((self.cert, chain), (self.key, key)):
            tmp = path + ".new"
            with open(tmp, "w") as f:
                f.write(h.read_text(src))
            os.chmod(tmp, 0o600)
            os.rename(tmp, path)

    def svcb(self):
        m = h.udp_query(self.dv.port, "_dns.resolver.arpa", "SVCB")
        self.assertEqual(m.rcode(), 0, m)
        return [(rs.name.to_text(), rd.priority, rd.target.to_text())
                for rs in m.answer if rs.rdtype == dns.rdatatype.SVCB for rd in rs]

    def test_ddr_follows_the_certificate(self):
        self.assertEqual(self.svcb(), [("_dns.resolver.arpa.", 1, "dns.test.")])
        ca2 = h.make_ca(self.pki, "ca2", "dnsveil second test CA")
        chain, key = h.make_leaf(self.pki, "noip", "ca2", cn="resolver.test",
                                 sans="DNS:resolver.test")
        self.replace_pair(chain, key)
        # the certificate watcher may reload it first: either way, wait
        # for the reload that applies it and DDR's answer to follow
        self.dv.proc.send_signal(signal.SIGHUP)
        h.wait_for(lambda: self.svcb() == [], h.scaled(10),
                   what="no DDR answer with a certificate without IP SANs")
        self.assertRegex(self.dv.stderr_text(),
                         r"the certificate has no IP SAN for its address")
        log("ok: a certificate without IP SANs: _dns.resolver.arpa NODATA (ddr.mode auto)")

        self.replace_pair(h.CERT, h.KEY)
        self.dv.proc.send_signal(signal.SIGHUP)
        h.wait_for(lambda: self.svcb() == [("_dns.resolver.arpa.", 1, "dns.test.")],
                   h.scaled(10), what="the DDR answer back with the first certificate")
        log("ok: the first certificate back: the DDR answer is back")

        # ddr.* reload too: a server name of our own
        self.write_config(self.base + "ddr:\n  server-name: alt.dns.test\n")
        logged = self.hup()
        self.assertRegex(logged, r"configuration checked and reloaded")
        self.assertEqual(self.svcb(), [("_dns.resolver.arpa.", 1, "alt.dns.test.")])
        log("ok: ddr.server-name applied by SIGHUP")


class RpzLocalData(PolicyReloadBase):

    ZONE = """$TTL 300
@ SOA ns.rpz.example. admin.rpz.example. 1 3600 600 86400 60
  NS ns.rpz.example.
rewrite.example.test CNAME target.example.test.
target.example.test A 192.0.2.77
target.example.test TXT "rpz target"
out.example.test CNAME %(www)s.
txt.example.test TXT "first" "second"
mx.example.test MX 10 mail.example.test.
srv._tcp.example.test SRV 0 5 389 dc.example.test.
*.wild.example.test TXT "wild"
""" % {"www": WWW}

    def test_rpz_local_data_types(self):
        self.ub = self.start_unbound(log_queries=False)
        zone = os.path.join(self.ub.dir, "local.rpz")
        with open(zone, "w") as f:
            f.write("$ORIGIN rpz.example.\n" + self.ZONE)
        self.dv = self.start_dnsveil(
            upstream=[self.ub], listen=["dns"],
            extra_yaml="lists:\n  local: { source: %s, format: rpz }\n"
                       "groups:\n  default: { block: [local] }\n" % zone)
        self.assertNotRegex(self.dv.stderr_text(), r"list local .*[1-9]\d* skipped")

        # a CNAME to a name: the rewrite, followed into the zone's data
        r = h.kdig(self.dv.port, "rewrite.example.test", "A")
        self.assertEqual(r.status, "NOERROR", repr(r))
        self.assertEqual([(n, t, rd) for n, t, _ttl, rd in r.records()],
                         [("rewrite.example.test.", "CNAME", "target.example.test."),
                          ("target.example.test.", "A", "192.0.2.77")], repr(r))
        r = h.kdig(self.dv.port, "rewrite.example.test", "TXT")
        self.assertEqual([(t, rd) for _n, t, _ttl, rd in r.records()],
                         [("CNAME", "target.example.test."), ("TXT", '"rpz target"')], repr(r))
        # a CNAME out of the zone: answered alone (the client asks again)
        r = h.kdig(self.dv.port, "out.example.test", "A")
        self.assertEqual([(t, rd) for _n, t, _ttl, rd in r.records()],
                         [("CNAME", WWW + ".")], repr(r))
        r = h.kdig(self.dv.port, "txt.example.test", "TXT")
        self.assertEqual([(t, rd) for _n, t, _ttl, rd in r.records()],
                         [("TXT", '"first" "second"')], repr(r))
        r = h.kdig(self.dv.port, "mx.example.test", "MX")
        self.assertEqual([(t, rd) for _n, t, _ttl, rd in r.records()],
                         [("MX", "10 mail.example.test.")], repr(r))
        r = h.kdig(self.dv.port, "srv._tcp.example.test", "SRV")
        self.assertEqual([(t, rd) for _n, t, _ttl, rd in r.records()],
                         [("SRV", "0 5 389 dc.example.test.")], repr(r))
        r = h.kdig(self.dv.port, "a.wild.example.test", "TXT")
        self.assertEqual([(n, t, rd) for n, t, _ttl, rd in r.records()],
                         [("a.wild.example.test.", "TXT", '"wild"')], repr(r))
        # another type at a name with local data: NODATA
        r = h.kdig(self.dv.port, "mx.example.test", "A")
        self.assertEqual((r.status, r.records()), ("NOERROR", []), repr(r))
        log("ok: RPZ local data CNAME (rewrite, followed), TXT, MX, SRV and a wildcard "
            "answered by kdig")


if __name__ == "__main__":
    h.main()
