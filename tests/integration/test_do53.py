#!/usr/bin/python3
"""Do53 (plain DNS over UDP and TCP): answers, question case, truncation,
EDNS sizes, the IPv6 listener, and SIGTERM draining.  kdig is the client
where the test is about a client; dnspython where exact bytes matter."""

import os
import socket
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import kdig, log  # noqa: E402

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.rcode  # noqa: E402


class Do53(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound()
        self.dv = self.start_dnsveil(upstream=[self.ub], config=h.base_config())

    def test_answers_udp_and_tcp(self):
        p = self.dv.port
        for tcp in (False, True):
            proto = "TCP" if tcp else "UDP"
            r = kdig(p, "www.example.test", "A", tcp=tcp)
            self.assertEqual(r.status, "NOERROR", "%s A: %r" % (proto, r))
            self.assertEqual([(x[0], x[1], x[3]) for x in r.records()],
                             [("www.example.test.", "A", "192.0.2.1")], "%s A: %r" % (proto, r))
            self.assertTrue(0 < r.records()[0][2] <= 300, "%s A TTL: %r" % (proto, r))
            log("ok: %s A www.example.test -> 192.0.2.1" % proto)

            r = kdig(p, "www.example.test", "AAAA", tcp=tcp)
            self.assertEqual([(x[1], x[3]) for x in r.records()], [("AAAA", "2001:db8::1")],
                             "%s AAAA: %r" % (proto, r))
            log("ok: %s AAAA www.example.test -> 2001:db8::1" % proto)

            r = kdig(p, "alias.example.test", "A", tcp=tcp)
            self.assertEqual(r.status, "NOERROR", "%s CNAME: %r" % (proto, r))
            self.assertEqual([(x[0], x[1], x[3]) for x in r.records()], [
                ("alias.example.test.", "CNAME", "alias2.example.test."),
                ("alias2.example.test.", "CNAME", "www.example.test."),
                ("www.example.test.", "A", "192.0.2.1")], "%s CNAME chain: %r" % (proto, r))
            log("ok: %s CNAME chain alias -> alias2 -> www -> 192.0.2.1" % proto)

            r = kdig(p, "nonexistent-%s.example.test" % proto.lower(), "A", tcp=tcp)
            self.assertEqual(r.status, "NXDOMAIN", "%s NXDOMAIN: %r" % (proto, r))
            self.assertEqual(r.records(), [], "%s NXDOMAIN has answers: %r" % (proto, r))
            auth = r.records("authority")
            self.assertTrue(any(x[0] == "example.test." and x[1] == "SOA" for x in auth),
                            "%s NXDOMAIN without the zone's SOA in authority: %r" % (proto, r))
            log("ok: %s NXDOMAIN with SOA in authority" % proto)

            r = kdig(p, "www.example.test", "TXT", tcp=tcp)
            self.assertEqual((r.status, r.records()), ("NOERROR", []), "%s NODATA: %r" % (proto, r))
            self.assertTrue(any(x[1] == "SOA" for x in r.records("authority")),
                            "%s NODATA without SOA: %r" % (proto, r))
            log("ok: %s NODATA (www TXT) with SOA" % proto)

    def test_many_names_udp(self):
        """Fifty different names, each answer matching its own question."""
        for i in range(0, 1000, 20):
            m = h.udp_query(self.dv.port, "h%d.example.test" % i)
            self.assertEqual([(x[0], x[1], x[3]) for x in h.rrset_texts(m)],
                             [("h%d.example.test." % i, "A", h.host_addr(i))], "h%d: %s" % (i, m))
        log("ok: 50 different names answered correctly over UDP")

    def _question_bytes(self, wire):
        # question section of a message with QDCOUNT=1 and an uncompressed qname
        i = 12
        while wire[i] != 0:
            i += 1 + wire[i]
        return wire[12:i + 5]

    def test_question_case_preserved(self):
        """The answer's question section has the client's letter case, also
        when the answer comes from the cache (filled by a lowercase query)."""
        p = self.dv.port
        h.udp_query(p, "www.example.test")  # fill the cache in lowercase
        for qname in ("WwW.Example.TEST", "www.EXAMPLE.test", "wWw.eXaMpLe.TeSt"):
            for tcp in (False, True):
                q = h.make_query(qname, "A")
                wire = q.to_wire()
                if tcp:
                    s = socket.create_connection(("127.0.0.1", p), timeout=h.scaled(3))
                    h.send_msg(s, wire)
                    resp = h.recv_msg(s)
                    s.close()
                else:
                    resp = h.udp_raw(p, wire, timeout=h.scaled(3))
                self.assertIsNotNone(resp, "no answer for %s" % qname)
                self.assertEqual(self._question_bytes(resp), self._question_bytes(wire),
                                 "%s: question section case/bytes changed: sent %r got %r" % (
                                     "TCP" if tcp else "UDP", self._question_bytes(wire),
                                     resp[12:12 + len(self._question_bytes(wire))]))
                m = dns.message.from_wire(resp)
                self.assertEqual(m.id, q.id)
                self.assertEqual(m.question[0].name.to_text(), qname + ".")
                self.assertEqual([x[3] for x in h.rrset_texts(m)], ["192.0.2.1"],
                                 "answer for %s: %s" % (qname, m))
                log("ok: %s question %s kept its case" % ("TCP" if tcp else "UDP", qname))

    def test_truncation_and_tcp(self):
        p = self.dv.port
        # kdig sends no EDNS by default: limit 512
        r = kdig(p, "big.example.test", "TXT", "+ignore")
        self.assertTrue(r.tc, "big TXT over UDP without EDNS must have TC: %r" % r)
        self.assertLessEqual(r.size, 512, "answer larger than 512 without EDNS: %r" % r)
        log("ok: UDP big TXT without EDNS: TC, %d bytes" % r.size)

        # client asks for 4096: dnsveil caps at 1232, so still TC
        r = kdig(p, "big.example.test", "TXT", "+ignore", "+bufsize=4096")
        self.assertTrue(r.tc, "big TXT over UDP with bufsize 4096 must still have TC "
                        "(dnsveil caps UDP answers at 1232): %r" % r)
        self.assertLessEqual(r.size, 1232, "UDP answer larger than 1232: %r" % r)
        log("ok: UDP big TXT with +bufsize=4096: TC, %d bytes" % r.size)

        # over TCP the whole answer
        r = kdig(p, "big.example.test", "TXT", tcp=True)
        self.assertFalse(r.tc, "TC over TCP: %r" % r)
        txt = r.records()
        self.assertEqual(len(txt), 1, "big TXT over TCP: %r" % r)
        for s in h.big_txt_strings():
            self.assertIn(s, txt[0][3], "big TXT over TCP lacks a string: %r" % r)
        self.assertGreater(r.size, 3000, "big TXT over TCP too small: %r" % r)
        log("ok: TCP big TXT: full answer, %d bytes" % r.size)

        # kdig without +ignore retries over TCP by itself
        r = kdig(p, "big.example.test", "TXT")
        self.assertFalse(r.tc, "kdig's automatic TCP retry still truncated: %r" % r)
        self.assertGreater(r.size, 3000, "kdig automatic TCP retry: %r" % r)
        log("ok: kdig UDP->TC->TCP retry got the full answer")

        # dnspython: EDNS 1232, 512 and a small answer that fits
        for payload, name, want_tc in ((1232, "big", True), (4096, "big", True),
                                       (512, "big", True), (512, "mid", True),
                                       (1232, "mid", False), (4096, "mid", False)):
            q = h.make_query(name + ".example.test", "TXT", payload=payload)
            resp = h.udp_raw(p, q.to_wire(), timeout=h.scaled(3))
            self.assertIsNotNone(resp, "no UDP answer for %s TXT bufsize %d" % (name, payload))
            m = dns.message.from_wire(resp, ignore_trailing=True)
            limit = min(max(payload, 512), 1232)
            self.assertLessEqual(len(resp), limit, "%s TXT EDNS %d: %d bytes > %d" % (
                name, payload, len(resp), limit))
            self.assertEqual(bool(m.flags & dns.flags.TC), want_tc,
                             "%s TXT with EDNS size %d: TC=%s, %d bytes" % (
                                 name, payload, bool(m.flags & dns.flags.TC), len(resp)))
            self.assertEqual(m.rcode(), dns.rcode.NOERROR)
            if not want_tc:
                self.assertEqual(h.txt_value(m), "".join(h.big_txt_strings()[:3]))
            log("ok: UDP %s TXT, EDNS %d: %d bytes, TC=%s" % (name, payload, len(resp), want_tc))
        # mid (~800 bytes) without EDNS: TC
        q = h.make_query("mid.example.test", "TXT", edns=None)
        resp = h.udp_raw(p, q.to_wire(), timeout=h.scaled(3))
        self.assertIsNotNone(resp, "no UDP answer for mid TXT without EDNS")
        m = dns.message.from_wire(resp, ignore_trailing=True)
        self.assertTrue(m.flags & dns.flags.TC and len(resp) <= 512,
                        "mid TXT without EDNS: TC=%s, %d bytes" % (
                            bool(m.flags & dns.flags.TC), len(resp)))
        log("ok: UDP mid TXT without EDNS: TC, %d bytes" % len(resp))

    def test_ipv6_listener(self):
        # what this tests must be there: a machine without ::1 fails it
        self.assertTrue(h.have_ipv6_loopback(), "no ::1 on this machine")
        d = self.start_dnsveil(upstream=[self.ub], config=h.base_config(), ipv6=True,
                               name="dnsveil6")
        for tcp in (False, True):
            r = kdig(d.port, "www.example.test", "A", server="::1", tcp=tcp)
            self.assertEqual((r.status, [x[3] for x in r.records()]), ("NOERROR", ["192.0.2.1"]),
                             "[::1] %s: %r" % ("TCP" if tcp else "UDP", r))
            log("ok: [::1]:%d %s answers" % (d.port, "TCP" if tcp else "UDP"))
        m = h.udp_query(d.port, "WwW.example.test", "AAAA", host="::1")
        self.assertEqual([x[3] for x in h.rrset_texts(m)], ["2001:db8::1"])
        self.assertEqual(m.question[0].name.to_text(), "WwW.example.test.")

    def test_sigterm_drains(self):
        """SIGTERM while a slow query is in flight on TCP: the query is still
        answered and the process exits 0."""
        slow = self.start_slow(delay=1.0)
        ub = self.start_unbound(whoami="slowtest", slow=slow)
        d = self.start_dnsveil(upstream=[ub], config=h.base_config(
            pool={"query-timeout-ms": 5000, "timeout-ms": 4000}), name="drain")
        s = socket.create_connection(("127.0.0.1", d.port), timeout=h.scaled(8))
        q = h.make_query(h.unique_label("drain") + ".slow.example.test", qid=4242)
        h.send_msg(s, q.to_wire())
        time.sleep(0.3)
        d.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            resp = dns.message.from_wire(h.recv_msg(s))
        except (OSError, ConnectionError) as e:
            resp = e
        s.close()
        rc = d.proc.wait(timeout=h.scaled(10))
        d.returncode = rc
        self.assertEqual(rc, 0, "exit code after SIGTERM: %s\n%s" % (rc, h.tail(d.stderr_path)))
        self.assertIsInstance(resp, dns.message.Message,
                              "query in flight at SIGTERM was not answered: %r" % (resp,))
        self.assertEqual(resp.id, 4242)
        self.assertEqual(resp.rcode(), dns.rcode.NOERROR, "in-flight answer: %s" % resp)
        log("ok: in-flight slow query answered %.2fs after SIGTERM, exit 0" % (
            time.monotonic() - t0))


class Do53Fleet(h.IntegrationTest):
    """A fleet's idle connections with the default limits: one worker holds
    10,000 (TARGETS.md: >= 10,000 idle connections per worker by default)."""

    N = 10000

    def test_default_holds_10000_idle_connections(self):
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.assertGreaterEqual(hard, self.N + 1000, "this test needs %d descriptors" % (self.N + 1000))
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        ub = self.start_unbound()
        # the default tcp-max-connections; only the idle timeout is long
        # enough for the connections to be opened one by one
        dv = self.start_dnsveil(upstream=[ub], workers=1, listen=["dns"],
                                config=h.base_config(limits={"tcp-idle-timeout-ms": 600000}))
        self.assertNotIn("open-files limit", dv.stderr_text(),
                         "a 1-worker default start warns about its open-files limit")
        st0 = dv.stats()
        rss0 = h.rss_bytes(dv.pid)
        conns = []
        try:
            deadline = time.monotonic() + h.scaled(120)
            for i in range(self.N):
                self.assertLess(time.monotonic(), deadline, "opened only %d connections" % i)
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                # ten source addresses: the connections never use up one
                # address's ephemeral ports
                s.bind(("127.0.0.%d" % (10 + i % 10), 0))
                s.settimeout(h.scaled(10))
                s.connect(("127.0.0.1", dv.port))
                conns.append(s)
            h.wait_for(lambda: dv.stats()["tcp_connections"] - st0["tcp_connections"] >= self.N,
                       h.scaled(30), what="dnsveil to accept every connection")
            per = (h.rss_bytes(dv.pid) - rss0) / float(self.N)
            d = h.stat_delta(st0, dv.stats(), ["tcp_evicted", "tcp_refused", "tcp_idle_closed",
                                               "tcp_accept_paused"])
            self.assertEqual(d, {"tcp_evicted": 0, "tcp_refused": 0, "tcp_idle_closed": 0,
                                 "tcp_accept_paused": 0}, d)
            # the first and the last connection are both still served
            for s in (conns[0], conns[-1]):
                q = dns.message.make_query("www.example.test", "A")
                h.send_msg(s, q.to_wire())
                r = dns.message.from_wire(h.recv_msg(s))
                self.assertEqual(r.rcode(), dns.rcode.NOERROR, r)
            log("ok: 1 worker with the default limits holds %d idle TCP connections "
                "(%.0f bytes of RSS each), the first and the last still answered" % (self.N, per))
        finally:
            for s in conns:
                s.close()


if __name__ == "__main__":
    h.main()
