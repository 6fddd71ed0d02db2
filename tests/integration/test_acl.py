#!/usr/bin/python3
"""Access control and rate limits (README "Access control and rate limits"),
through real clients: dnspython and kdig over Do53 UDP and TCP with the
source address they bind (127.0.0.2 is denied, 127.0.0.3 and 127.0.0.4
are rate-limited groups), DoT with the client ID in the TLS SNI (kdig
+tls-sni and Python's ssl), DoH with the client ID in the path (curl),
DoQ (dnsveil-doq --bind, --name), and the counters on /metrics.

One dnsveil (one worker, so one bucket table), one Unbound, these groups:

  default  deny-from [127.0.0.2]
  limited  rate-limit-qps 1, burst 4   (id limited-*, 127.0.0.3; per ID
                                        or per /32 address)
  dropper  rate-limit-qps 1, burst 2, rate-limit-action drop  (127.0.0.4)
"""

import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402
from dvtest.doh import b64url, curl  # noqa: E402

import dns.exception  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

h.ensure_dev_certs()

EDE_PROHIBITED = 18
BURST = 4


def ede_texts(msg):
    return [o.text for o in (msg.options or []) if int(o.otype) == 15]


class Acl(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        self.admin_port = h.free_port()
        extra = """groups:
  default:
    deny-from: [127.0.0.2]
  limited:
    rate-limit-qps: 1
    rate-limit-burst: %d
    rate-limit-ipv4-prefix: 32
  dropper:
    rate-limit-qps: 1
    rate-limit-burst: 2
    rate-limit-action: drop
    rate-limit-ipv4-prefix: 32
clients:
  - { id: "limited-*", group: limited }
  - { cidr: 127.0.0.3, group: limited }
  - { cidr: 127.0.0.4, group: dropper }
policy:
  server-names: [dns.test]
admin:
  listen: ["http://127.0.0.1:%d"]
""" % (BURST, self.admin_port)
        cfg = h.doh_config()
        cfg["log-level"] = "debug"
        self.dv = h.Dnsveil(listen=["dns", "tls", "https", "quic"], upstream=[self.ub], workers=1,
                            config=cfg, extra_yaml=extra, name="acl")
        self._dnsveils.append(self.dv)
        self.dv.start()

    # ---- clients

    def udp(self, name, source, timeout=None):
        q = h.make_query(name, "A")
        return dns.query.udp(q, "127.0.0.1", port=self.dv.port, source=source,
                             timeout=timeout or h.scaled(3))

    def tcp(self, name, source):
        q = h.make_query(name, "A")
        return dns.query.tcp(q, "127.0.0.1", port=self.dv.port, source=source,
                             timeout=h.scaled(3))

    def doh(self, path, name, interface=None):
        wire = h.make_query(name, "A").to_wire()
        args = ["--http2"] + (["--interface", interface] if interface else [])
        r = curl(*args, "https://127.0.0.1:%d%s?dns=%s" % (self.dv.https_port, path, b64url(wire)))
        self.assertEqual(r.status, 200, "%s: %r" % (path, r))
        return dns.message.from_wire(r.body)

    def metric(self, family, group):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.admin_port,
                                    timeout=h.scaled(5)) as r:
            text = r.read().decode()
        line = 'dnsveil_policy_group_%s_total{group="%s"} ' % (family, group)
        for ln in text.splitlines():
            if ln.startswith(line):
                return int(ln[len(line):])
        self.fail("no %s in /metrics:\n%s" % (line, text))

    def assert_refused(self, msg, text):
        self.assertEqual(msg.rcode(), dns.rcode.REFUSED, msg.to_text())
        self.assertEqual(h.ede_codes(msg), [EDE_PROHIBITED], msg.to_text())
        self.assertEqual(ede_texts(msg), [text], msg.to_text())
        self.assertEqual(msg.answer, [], msg.to_text())

    def assert_answered(self, msg):
        self.assertEqual(msg.rcode(), dns.rcode.NOERROR, msg.to_text())
        self.assertFalse(msg.flags & dns.flags.TC, msg.to_text())
        self.assertEqual(len(h.a_records(msg)), 1, msg.to_text())

    # ---- tests

    def test_deny_from_every_transport(self):
        """127.0.0.2 is refused with EDE 18 over UDP, TCP, DoT and DoH;
        127.0.0.1 is served; the default group's refused counter moves."""
        self.assert_answered(self.udp("h1.example.test", "127.0.0.1"))
        self.assert_refused(self.udp("h1.example.test", "127.0.0.2"), "access denied")
        self.assert_refused(self.tcp("h2.example.test", "127.0.0.2"), "access denied")
        s = h.tls_connect(self.dv.tls_port, source="127.0.0.2")
        try:
            _, m = h.stream_query(s, h.make_query("h3.example.test", "A"))
        finally:
            s.close()
        self.assert_refused(m, "access denied")
        self.assert_refused(self.doh("/dns-query", "h4.example.test", interface="127.0.0.2"),
                            "access denied")
        # kdig too, bound to the denied address
        r = h.kdig(self.dv.port, "h5.example.test", "A", "-b", "127.0.0.2")
        self.assertEqual((r.json or {}).get("RCODE"), 5, r)
        # DoQ from the denied address, and from an allowed one
        r = self.dv.doq("--bind", "127.0.0.2", names=("h7.example.test", "A"))
        self.assertEqual([a["rcode"] for a in r.answers], ["REFUSED"], r)
        r = self.dv.doq("--bind", "127.0.0.1", names=("h8.example.test", "A"))
        self.assertEqual([a["rcode"] for a in r.answers], ["NOERROR"], r)
        self.assertEqual(self.metric("refused", "default"), 6)
        self.assert_answered(self.tcp("h6.example.test", "127.0.0.1"))
        self.assertEqual(self.metric("refused", "default"), 6)
        log("ok: 127.0.0.2 refused with EDE 18 over UDP, TCP, DoT, DoH, kdig and DoQ; "
            "127.0.0.1 served")

    def test_udp_truncated_past_burst_then_tcp(self):
        """Over UDP a client of 127.0.0.3 gets its burst, then empty
        answers with TC; dnspython's and kdig's TCP retries get the
        answer (the stream transports have their own bucket)."""
        t0 = time.monotonic()
        msgs = [self.udp("h%d.example.test" % i, "127.0.0.3") for i in range(10)]
        elapsed = time.monotonic() - t0
        for m in msgs[:BURST]:
            self.assert_answered(m)
        tc = [m for m in msgs[BURST:] if m.flags & dns.flags.TC]
        self.assertGreaterEqual(len(tc), 1, [m.to_text() for m in msgs])
        # 1 qps: past the burst, at most one more a second
        passed = [m for m in msgs if not m.flags & dns.flags.TC]
        self.assertLessEqual(len(passed), BURST + int(elapsed) + 1, elapsed)
        for m in tc:
            self.assertEqual(m.rcode(), dns.rcode.NOERROR, m.to_text())
            self.assertEqual(m.answer, [], m.to_text())
            self.assertEqual(h.ede_codes(m), [], m.to_text())
        # a real client's fallback: dnspython retries over TCP and gets it
        q = h.make_query("h42.example.test", "A")
        r, used_tcp = dns.query.udp_with_fallback(q, "127.0.0.1", port=self.dv.port,
                                                  source="127.0.0.3", timeout=h.scaled(3))
        self.assertTrue(used_tcp, r.to_text())
        self.assertEqual(h.a_records(r), [h.host_addr(42)], r.to_text())
        # kdig over UDP: truncated, it asks again over TCP by itself
        k = h.kdig(self.dv.port, "h43.example.test", "A", "-b", "127.0.0.3")
        self.assertEqual((k.json or {}).get("RCODE"), 0, k)
        self.assertIn("retrying over TCP", k.stderr + k.stdout, k)
        self.assertEqual([rr.get("rdataA") for rr in k.json.get("answerRRs") or []],
                         [h.host_addr(43)], k)
        limited = self.metric("rate_limited", "limited")
        self.assertGreaterEqual(limited, len(tc) + 2)
        self.assertEqual(self.metric("rate_limited", "default"), 0)
        # 127.0.0.1 (the default group, no limit) is not held back
        for i in range(12):
            self.assert_answered(self.udp("h%d.example.test" % (100 + i), "127.0.0.1"))
        log("ok: UDP burst %d, then %d TC answers in %.2f s; TCP retries by dnspython and "
            "kdig answered; rate_limited{limited} = %d" % (BURST, len(tc), elapsed, limited))

    def test_udp_drop(self):
        """rate-limit-action: drop: past the burst a UDP query from
        127.0.0.4 gets no answer at all; TCP is refused with EDE 18."""
        for i in range(2):
            self.assert_answered(self.udp("h%d.example.test" % i, "127.0.0.4"))
        with self.assertRaises(dns.exception.Timeout):
            self.udp("h2.example.test", "127.0.0.4", timeout=h.scaled(1))
        for i in range(2):
            self.assert_answered(self.tcp("h%d.example.test" % (10 + i), "127.0.0.4"))
        self.assert_refused(self.tcp("h12.example.test", "127.0.0.4"), "rate limited")
        self.assertGreaterEqual(self.metric("rate_limited", "dropper"), 2)
        log("ok: dropped over UDP, REFUSED over TCP past the burst")

    def test_dot_and_doh_refused_past_limit(self):
        """A client ID's bucket: DoT with SNI limited-7.dns.test on one
        connection, DoH /dns-query/limited-9 by curl and DoQ with SNI
        limited-5.dns.test get their burst and then REFUSED (with EDE 18
        "rate limited" where the client shows it); another ID is not held
        back; kdig over DoT sees REFUSED too."""
        s = h.tls_connect(self.dv.tls_port, server_hostname="limited-7.dns.test")
        try:
            msgs = [h.stream_query(s, h.make_query("h%d.example.test" % i, "A"))[1]
                    for i in range(BURST + 3)]
        finally:
            s.close()
        for m in msgs[:BURST]:
            self.assert_answered(m)
        refused = [m for m in msgs[BURST:] if m.rcode() == dns.rcode.REFUSED]
        self.assertGreaterEqual(len(refused), 1, [m.to_text() for m in msgs])
        for m in refused:
            self.assert_refused(m, "rate limited")
        # the same ID over kdig (a new connection): its bucket is still low
        r = h.kdig_tls(self.dv.tls_port, [("h50.example.test", "A")],
                       "+tls-sni=limited-7.dns.test")
        self.assertEqual((r.json or {}).get("RCODE"), 5, r)
        # another ID has a bucket of its own
        r = h.kdig_tls(self.dv.tls_port, [("h51.example.test", "A")],
                       "+tls-sni=limited-8.dns.test")
        self.assertEqual((r.json or {}).get("RCODE"), 0, r)

        doh = [self.doh("/dns-query/limited-9", "h%d.example.test" % (60 + i))
               for i in range(BURST + 3)]
        for m in doh[:BURST]:
            self.assert_answered(m)
        refused_doh = [m for m in doh[BURST:] if m.rcode() == dns.rcode.REFUSED]
        self.assertGreaterEqual(len(refused_doh), 1, [m.to_text() for m in doh])
        for m in refused_doh:
            self.assert_refused(m, "rate limited")
        self.assert_answered(self.doh("/dns-query", "h70.example.test"))
        # DoQ with the ID in the SNI: one connection, a stream a query
        names = []
        for i in range(BURST + 4):
            names += ["h%d.example.test" % (80 + i), "A"]
        t0 = time.monotonic()
        r = self.dv.doq("--name", "limited-5.dns.test", "--ca", h.CA, trust=False,
                        names=tuple(names))
        elapsed = time.monotonic() - t0
        rcodes = [a["rcode"] for a in r.answers]
        self.assertEqual(len(rcodes), BURST + 4, r)
        self.assertGreaterEqual(rcodes.count("NOERROR"), BURST, rcodes)
        self.assertLessEqual(rcodes.count("NOERROR"), BURST + int(elapsed) + 1, rcodes)
        self.assertGreaterEqual(rcodes.count("REFUSED"), 1, rcodes)
        refused_doq = rcodes.count("REFUSED")
        self.assertGreaterEqual(self.metric("rate_limited", "limited"),
                                len(refused) + 1 + len(refused_doh) + refused_doq)
        log("ok: DoT %d, DoH %d and DoQ %d REFUSED (EDE 18) past the burst" % (
            len(refused), len(refused_doh), refused_doq))

    def test_check_config(self):
        d = tempfile.mkdtemp(prefix="dv-acl-check-")
        try:
            p = os.path.join(d, "c.yaml")
            with open(p, "w") as f:
                f.write(h.to_yaml({"listen": ["udp://127.0.0.1:1"],
                                   "upstream": ["tcp://127.0.0.1:2"], "fallback": []}))
                f.write("groups:\n  g:\n    rate-limit-qps: 10\n"
                        "    rate-limit-action: slow\n"
                        "    deny-from: [192.0.2.0/33]\n")
            r = h.run_dnsveil(["--check-config", "-c", p])
            out = (r.stdout + r.stderr).replace(p, "FILE")
            self.assertEqual(r.returncode, 1, out)
            self.assertIn("FILE:7: groups.g.rate-limit-action:", out)
        finally:
            subprocess.run(["rm", "-rf", d])
        r = h.run_dnsveil(["--help-config"])
        for key in ("allow-from", "deny-from", "rate-limit-qps", "rate-limit-burst",
                    "rate-limit-action", "rate-limit-ipv4-prefix", "rate-limit-ipv6-prefix"):
            self.assertIn("groups.NAME." + key, r.stdout, key)


if __name__ == "__main__":
    h.main()
