#!/usr/bin/python3
"""Local records, internal names and the local resolver's REFUSED (README
"Policy": "Local records", "Internal names"), through real parts: the
dnsveil binary, a real Unbound as the local resolver (its query log on)
and a second real Unbound as the public fallback (log-queries: yes, so
that what reached it can be read back), dnspython over UDP, kdig over
DoT with the client ID in the TLS SNI and over DoH, curl with the ID in
the DoH path.

- Records of a group are answered by dnsveil itself, authoritatively (AA),
  by type, with CNAMEs followed through the local data, a CNAME to a name
  outside it answered alone, NODATA with a SOA, RFC 4592 wildcards (and
  their closest encloser rule); another group gets its own records for
  the same name; neither resolver ever sees these names; the stats line
  and /metrics count the local answers by group.
- An internal name never reaches the fallback: while the local resolver is
  slow (a 1 s authority behind it), the local answer comes after 1 s
  instead of the fallback's NXDOMAIN after the hedge delay (shown against
  a dnsveil without internal:), or SERVFAIL with EDE 22 at the query
  deadline when that is shorter; while it is dead, the client gets
  SERVFAIL with EDE 22; the special-use names likewise.
- A REFUSED from the local resolver is the client's answer; with
  pool.refused-is-final: false the fallback answers.
- --check-config names the line of a bad record."""

import os
import sys
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402
from dvtest.doh import b64url, curl  # noqa: E402

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

h.ensure_dev_certs()

EDE_NO_REACHABLE_AUTHORITY = 22

RECORDS = """groups:
  default:
    records:
      - "intranet.corp.example. 300 IN A 192.0.2.10"
      - "intranet.corp.example. 300 IN AAAA 2001:db8::10"
      - "intranet.corp.example. 300 IN TXT \\"hello world\\" \\"two\\""
      - "intranet.corp.example. 120 IN MX 10 mail.corp.example."
      - "_ldap._tcp.corp.example. 300 IN SRV 0 5 389 dc1.corp.example."
      - "10.2.0.192.in-addr.arpa. 300 IN PTR intranet.corp.example."
      - "svc.corp.example. 300 IN HTTPS 1 . alpn=h2,h3 port=8443 ipv4hint=192.0.2.11"
      - "alias.corp.example. 60 IN CNAME intranet.corp.example."
      - "ext.corp.example. 60 IN CNAME www.example.test."
      - "*.lab.corp.example. 30 IN A 192.0.2.30"
      - "host.sub.lab.corp.example. 30 IN A 192.0.2.31"
  kids:
    records:
      - "intranet.corp.example. 300 IN A 192.0.2.20"
clients:
  - { id: "kid-*", group: kids }
policy:
  server-names: [dns.test]
"""


def ask(dv, name, rdtype="A", timeout=None):
    q = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
    return dns.query.udp(q, "127.0.0.1", port=dv.port, timeout=timeout or h.scaled(5))


def texts(msg, section="answer"):
    return [(n, t, ttl, rd) for n, t, ttl, rd in h.rrset_texts(msg, section)]


class LocalRecords(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.local = self.start_unbound("local", log_queries=True)
        self.fb = self.start_unbound("fallback", log_queries=True)
        cfg = h.doh_config()
        cfg["log-level"] = "debug"
        self.admin_port = h.free_port()
        admin = 'admin:\n  listen: ["http://127.0.0.1:%d"]\n' % self.admin_port
        self.dv = h.Dnsveil(listen=["dns", "tls", "https"], upstream=[self.local],
                            fallback=[self.fb],
                            config=cfg, extra_yaml=RECORDS + admin, name="local")
        self._dnsveils.append(self.dv)
        self.dv.start()

    def test_records_wildcards_and_groups(self):
        dv = self.dv
        m = ask(dv, "intranet.corp.example", "A")
        self.assertEqual(m.rcode(), dns.rcode.NOERROR, m)
        self.assertTrue(m.flags & dns.flags.AA, m)
        self.assertEqual(texts(m), [("intranet.corp.example.", "A", 300, "192.0.2.10")])
        m = ask(dv, "INTRANET.Corp.Example", "AAAA")
        self.assertEqual(m.question[0].name.to_text(), "INTRANET.Corp.Example.")
        self.assertEqual([x[3] for x in texts(m)], ["2001:db8::10"], m)
        m = ask(dv, "intranet.corp.example", "TXT")
        self.assertEqual([x[3] for x in texts(m)], ['"hello world" "two"'], m)
        m = ask(dv, "intranet.corp.example", "MX")
        self.assertEqual(texts(m), [("intranet.corp.example.", "MX", 120,
                                     "10 mail.corp.example.")])
        m = ask(dv, "_ldap._tcp.corp.example", "SRV")
        self.assertEqual([x[3] for x in texts(m)], ["0 5 389 dc1.corp.example."], m)
        m = ask(dv, "10.2.0.192.in-addr.arpa", "PTR")
        self.assertEqual([x[3] for x in texts(m)], ["intranet.corp.example."], m)
        m = ask(dv, "svc.corp.example", "HTTPS")
        self.assertEqual(len(m.answer), 1, m)
        self.assertEqual(texts(m)[0][3].replace('"', ''),
                         "1 . alpn=h2,h3 port=8443 ipv4hint=192.0.2.11")
        # NODATA: the name has records, not of this type; a SOA of the name
        m = ask(dv, "intranet.corp.example", "NS")
        self.assertEqual((m.rcode(), m.answer), (dns.rcode.NOERROR, []), m)
        soa = texts(m, "authority")
        self.assertEqual([(x[0], x[1], x[2]) for x in soa],
                         [("intranet.corp.example.", "SOA", 120)], m)
        self.assertTrue(m.flags & dns.flags.AA, m)
        # a CNAME followed through the local data; one to the outside alone
        m = ask(dv, "alias.corp.example", "A")
        self.assertEqual(texts(m), [("alias.corp.example.", "CNAME", 60, "intranet.corp.example."),
                                    ("intranet.corp.example.", "A", 300, "192.0.2.10")])
        m = ask(dv, "ext.corp.example", "A")
        self.assertEqual(texts(m), [("ext.corp.example.", "CNAME", 60, "www.example.test.")])
        # wildcards: any depth below the closest encloser, the owner is the
        # name asked; not the encloser itself, not below an existing name
        for name in ("a.lab.corp.example", "x.y.lab.corp.example"):
            m = ask(dv, name, "A")
            self.assertEqual(texts(m), [(name + ".", "A", 30, "192.0.2.30")])
            self.assertTrue(m.flags & dns.flags.AA, m)
        m = ask(dv, "host.sub.lab.corp.example", "A")
        self.assertEqual([x[3] for x in texts(m)], ["192.0.2.31"], m)
        # these go to the local resolver (internal: the records' names),
        # which refuses corp.example: its REFUSED is the answer
        for name in ("other.sub.lab.corp.example", "lab.corp.example", "else.corp.example"):
            m = ask(dv, name, "A")
            self.assertEqual(m.rcode(), dns.rcode.REFUSED, (name, m))
        # the kids group (ID in the SNI, over DoT) has its own record
        r = h.kdig_tls(dv.ports["tls"], [("intranet.corp.example", "A"),
                                         ("a.lab.corp.example", "A")],
                       "+tls-sni=kid-1.dns.test")
        self.assertEqual(h.kdig_answers(r), [("intranet.corp.example.", ["192.0.2.20"]),
                                             ("a.lab.corp.example.", [])], r)
        self.assertEqual(r.messages[1].get("RCODE"), dns.rcode.REFUSED, r)
        # DoH: the kids ID in the path (curl), and kdig's DoH client with
        # none (the default group)
        wire = h.make_query("intranet.corp.example", "A").to_wire()
        r = curl("--http2", "https://127.0.0.1:%d/dns-query/kid-2?dns=%s" % (
            dv.ports["https"], b64url(wire)))
        self.assertEqual(r.status, 200, r)
        m = dns.message.from_wire(r.body)
        self.assertTrue(m.flags & dns.flags.AA, m)
        self.assertEqual([x[3] for x in texts(m)], ["192.0.2.20"], m)
        r = h.kdig_tls(dv.ports["https"], [("alias.corp.example", "A")], "+https")
        self.assertEqual([x[3] for x in r.records()],
                         ["intranet.corp.example.", "192.0.2.10"], r)
        # and the default group's answer is still its own (no bleed)
        m = ask(dv, "intranet.corp.example", "A")
        self.assertEqual([x[3] for x in texts(m)], ["192.0.2.10"])
        # nobody upstream saw a local name; the fallback saw no corp.example
        for name in ("intranet.corp.example", "alias.corp.example", "x.y.lab.corp.example",
                     "svc.corp.example", "10.2.0.192.in-addr.arpa"):
            self.assertEqual(self.local.queries_for(name), 0, name)
            self.assertEqual(self.fb.queries_for(name), 0, name)
        # (the kids group has no wildcard: its a.lab.corp.example was asked
        # of the local resolver)
        for name in ("other.sub.lab.corp.example", "lab.corp.example", "else.corp.example",
                     "a.lab.corp.example"):
            self.assertGreaterEqual(self.local.queries_for(name), 1, name)
            self.assertEqual(self.fb.queries_for(name), 0, name)
        st = dv.stats()
        self.assertEqual(st["policy"]["groups"]["default"]["local"], 15, st["policy"])
        self.assertEqual(st["policy"]["groups"]["kids"]["local"], 2, st["policy"])
        self.assertGreaterEqual(st["upstream_refused_final"], 3, st)
        # /metrics: the same counters by group
        r = curl("http://127.0.0.1:%d/metrics" % self.admin_port)
        self.assertEqual(r.status, 200, r)
        text = r.body.decode()
        self.assertIn('dnsveil_policy_group_local_total{group="default"} 15\n', text)
        self.assertIn('dnsveil_policy_group_local_total{group="kids"} 2\n', text)
        self.assertIn('dnsveil_policy_group_queries_total{group="kids"} 3\n', text)
        self.assertRegex(text, r"\ndnsveil_upstream_refused_final_total [1-9]")
        dv.wait_log(r"policy: client 127\.0\.0\.1 id kid-1 group kids: local "
                    r"intranet\.corp\.example")
        log("ok: local records, wildcards, CNAMEs, NODATA and two groups; no upstream "
            "saw them")


class InternalNames(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.slow = self.start_slow(delay=1.0)
        # the local resolver: slow.example.test through a 1 s authority,
        # and its own policy refusing mail.example.test
        self.local = self.start_unbound(
            "local", slow=self.slow, log_queries=True,
            extra_server_conf='  local-zone: "mail.example.test." refuse\n')
        # the fallback answers example.test at once (slow.example.test:
        # NXDOMAIN, mail.example.test: 192.0.2.25)
        self.fb = self.start_unbound("fallback", log_queries=True)

    def dnsveil(self, name, extra):
        d = h.Dnsveil(listen=["dns"], upstream=[self.local], fallback=[self.fb],
                      config={"log-level": "info"}, extra_yaml=extra, name=name)
        self._dnsveils.append(d)
        return d.start()

    def test_internal_name_slow_local(self):
        """Slow local resolver: the internal name waits for it; without
        internal: the fallback's NXDOMAIN wins the hedge (the issue's
        report)."""
        plain = self.dnsveil("plain", "")
        name = h.unique_label("p") + ".slow.example.test"
        m = ask(plain, name)
        self.assertEqual(m.rcode(), dns.rcode.NXDOMAIN, m)
        self.assertEqual(self.fb.queries_for(name), 1)
        log("without internal: the fallback answered %s NXDOMAIN" % name)

        dv = self.dnsveil("internal", "internal: [slow.example.test, corp.example]\n")
        for i in range(3):
            name = h.unique_label("i%d" % i) + ".SLOW.example.test"
            t0 = time.monotonic()
            m = ask(dv, name)
            dt = time.monotonic() - t0
            self.assertEqual((m.rcode(), h.a_records(m)), (dns.rcode.NOERROR, ["192.0.2.200"]), m)
            self.assertGreaterEqual(dt, 0.9, "answered before the slow authority could")
            self.assertEqual(self.fb.queries_for(name), 0, name)
            self.assertGreaterEqual(self.local.queries_for(name), 1, name)
            log("internal %s: the local answer after %.2f s" % (name, dt))
        st = dv.stats()
        self.assertGreaterEqual(st["internal_kept"], 3, st)
        self.assertEqual(st["fallback_queries"], 0, st)
        # a public name still goes to both after the hedge delay as before
        self.assertEqual(ask(dv, "www.example.test").rcode(), dns.rcode.NOERROR)

        # slower than the query deadline: SERVFAIL with EDE 22 saying so,
        # still nothing at the fallback
        short = self.dnsveil("deadline", "internal: [slow.example.test]\n"
                             "pool:\n  query-timeout-ms: 400\n")
        name = h.unique_label("t") + ".slow.example.test"
        m = ask(short, name)
        self.assertEqual(m.rcode(), dns.rcode.SERVFAIL, m)
        self.assertEqual(h.ede_codes(m), [EDE_NO_REACHABLE_AUTHORITY], m)
        self.assertIn("internal name: the local upstreams did not answer in time",
                      [getattr(o, "text", "") for o in m.options][0], m)
        self.assertEqual(self.fb.queries_for(name), 0, name)
        self.assertGreaterEqual(short.stats()["internal_kept"], 1)

    def test_internal_name_dead_local(self):
        """Dead local resolver: SERVFAIL with EDE 22 for internal and
        special-use names, the fallback asked nothing; public names are
        answered by the fallback."""
        dv = self.dnsveil("internal", "internal: [slow.example.test, corp.example]\n")
        self.local.kill()
        names = [(h.unique_label("d") + ".slow.example.test", "A"),
                 ("intranet.corp.example", "A"),
                 ("printer.home.arpa", "A"), ("nas.local", "A"), ("git.internal", "AAAA"),
                 ("10.2.0.192.in-addr.arpa", "PTR"), ("1.0.16.172.in-addr.arpa", "PTR"),
                 ("4.3.2.1.10.in-addr.arpa", "PTR"), ("9.9.64.100.in-addr.arpa", "PTR"),
                 ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa",
                  "PTR")]
        for name, rdtype in names:
            m = ask(dv, name, rdtype)
            self.assertEqual(m.rcode(), dns.rcode.SERVFAIL, (name, m))
            self.assertEqual(h.ede_codes(m), [EDE_NO_REACHABLE_AUTHORITY], (name, m))
        m = ask(dv, "www.example.test")
        self.assertEqual(h.a_records(m), ["192.0.2.1"], m)
        for name, _ in names:
            self.assertEqual(self.fb.queries_for(name), 0, name)
        self.assertGreaterEqual(self.fb.queries_for("www.example.test"), 1)
        log("local dead: %d internal and special-use names got SERVFAIL/EDE 22, the "
            "fallback saw none of them" % len(names))

    def test_refused_is_final(self):
        dv = self.dnsveil("final", "")
        m = ask(dv, "mail.example.test")
        self.assertEqual(m.rcode(), dns.rcode.REFUSED, m)
        self.assertEqual(self.fb.queries_for("mail.example.test"), 0)
        st = dv.stats()
        self.assertEqual(st["upstream_refused_final"], 1, st)
        # SERVFAIL and timeouts still fail over: the slow name with a
        # hedge is the fallback's
        off = self.dnsveil("notfinal", "pool:\n  refused-is-final: false\n")
        m = ask(off, "mail.example.test")
        self.assertEqual(h.a_records(m), ["192.0.2.25"], m)
        self.assertEqual(self.fb.queries_for("mail.example.test"), 1)
        log("REFUSED kept by default; with refused-is-final: false the fallback answered")


class LocalConfig(h.IntegrationTest):
    """--check-config: a bad record is FILE:LINE: KEY: reason."""

    def check(self, text):
        return h.check_config_text(text)

    def test_errors(self):
        head = "groups:\n  default:\n    records:\n      - \"a.corp.example. 300 IN A 192.0.2.1\"\n"
        cases = [
            ("      - \"b.corp.example. 300 IN A 192.0.2\"\n",
             "FILE:8: groups.default.records: 'b.corp.example. 300 IN A 192.0.2': "),
            ("      - \"c.corp.example 300 IN A 192.0.2.1\"\n",
             "FILE:8: groups.default.records: 'c.corp.example 300 IN A 192.0.2.1': the owner "
             "name must be absolute"),
            ("      - \"corp.example. 300 IN NS ns.corp.example.\"\n",
             "FILE:8: groups.default.records: 'corp.example. 300 IN NS ns.corp.example.': "
             "type NS is not served locally"),
            ("      - \"a*.corp.example. 300 IN A 192.0.2.1\"\n",
             "'*' only as the whole first label"),
            ("      - { a: 1 }\n", "FILE:8: groups.default.records: expected a zone-file line"),
        ]
        for line, want in cases:
            rc, out = self.check(head + line)
            self.assertEqual(rc, 1, out)
            self.assertIn(want, out)
        rc, out = self.check("internal: [\".\"]\n")
        self.assertEqual(rc, 1, out)
        self.assertIn("FILE:4: internal: ", out)
        rc, out = self.check(head + "internal: [corp.example]\npolicy:\n"
                             "  internal-special-use: false\npool:\n  refused-is-final: false\n")
        self.assertEqual(rc, 0, out)
        self.assertIn("configuration OK", out)


if __name__ == "__main__":
    h.main()
