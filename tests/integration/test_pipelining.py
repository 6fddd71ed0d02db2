#!/usr/bin/python3
"""TCP pipelining (RFC 7766 6.2.1.1): several queries on one client
connection are answered as soon as each is ready, out of order, with the
IDs matched; many pipelined queries on one connection are all answered.
The slow name (*.slow.example.test) is served through Unbound by the
Python SlowAuthority, which answers after 1 s."""

import os
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.message  # noqa: E402
import dns.rcode  # noqa: E402

SLOW_DELAY = 1.0


class Pipelining(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.slow = self.start_slow(delay=SLOW_DELAY)
        self.ub = self.start_resolver(slow=self.slow)
        self.dv = self.start_dnsveil(upstream=[self.ub], config=h.base_config(
            pool={"query-timeout-ms": 5000, "timeout-ms": 4000},
            limits={"tcp-max-inflight": 128}))

    def _connect(self):
        s = socket.create_connection(("127.0.0.1", self.dv.port), timeout=h.scaled(10))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def test_out_of_order(self):
        slow_name = h.unique_label("x1") + ".slow.example.test"
        s = self._connect()
        try:
            q_slow = h.make_query(slow_name, "A", qid=0x1111)
            q_fast = h.make_query("www.example.test", "A", qid=0x2222)
            t0 = time.monotonic()
            h.send_msg(s, q_slow.to_wire())
            h.send_msg(s, q_fast.to_wire())
            first = dns.message.from_wire(h.recv_msg(s))
            t1 = time.monotonic() - t0
            second = dns.message.from_wire(h.recv_msg(s))
            t2 = time.monotonic() - t0
        finally:
            s.close()
        log("first answer id 0x%04x after %.3fs, second id 0x%04x after %.3fs" % (
            first.id, t1, second.id, t2))
        self.assertEqual(first.id, 0x2222, "the fast answer (www) must come first, out of order; "
                         "got id 0x%04x (%s) first after %.3fs" % (first.id, first.question, t1))
        self.assertLess(t1, SLOW_DELAY * 0.8, "the fast answer waited for the slow one: %.3fs" % t1)
        self.assertEqual(second.id, 0x1111)
        self.assertGreaterEqual(t2, SLOW_DELAY * 0.8, "slow answer too early (%.3fs)?" % t2)
        self.assertEqual(first.question[0].name.to_text(), "www.example.test.")
        self.assertEqual([x[3] for x in h.rrset_texts(first)], ["192.0.2.1"], str(first))
        self.assertEqual(second.question[0].name.to_text(), slow_name + ".")
        self.assertEqual(second.rcode(), dns.rcode.NOERROR, str(second))
        self.assertEqual([x[3] for x in h.rrset_texts(second)], ["192.0.2.200"], str(second))
        log("ok: fast answer overtook the slow one on one TCP connection; both correct")

    def _pipeline(self, names, base_id):
        """Send all queries in one write on one connection; return {id: msg}."""
        s = self._connect()
        wires = []
        for i, n in enumerate(names):
            q = h.make_query(n, "A", qid=base_id + i)
            w = q.to_wire()
            wires.append(struct.pack("!H", len(w)) + w)
        answers = {}
        t0 = time.monotonic()
        try:
            s.sendall(b"".join(wires))
            while len(answers) < len(names):
                m = dns.message.from_wire(h.recv_msg(s))
                self.assertNotIn(m.id, answers, "two answers with id %d" % m.id)
                answers[m.id] = m
        except (OSError, ConnectionError) as e:
            self.fail("pipelined %d queries: only %d answers before %r" % (
                len(names), len(answers), e))
        finally:
            s.close()
        log("%d pipelined queries answered in %.3fs" % (len(names), time.monotonic() - t0))
        return answers

    def test_100_pipelined_cached_and_uncached(self):
        # h0..h99: cache misses first time (answered through the upstream pool)
        names = ["h%d.example.test" % i for i in range(100)]
        ans = self._pipeline(names, 1000)
        for i in range(100):
            m = ans[1000 + i]
            self.assertEqual(m.question[0].name.to_text(), names[i] + ".", "id/question mismatch")
            self.assertEqual([x[3] for x in h.rrset_texts(m)], [h.host_addr(i)], str(m))
        log("ok: 100 pipelined cache misses, all correct and matched by id")
        # again: all cache hits
        ans = self._pipeline(names, 5000)
        for i in range(100):
            self.assertEqual([x[3] for x in h.rrset_texts(ans[5000 + i])], [h.host_addr(i)])
        log("ok: 100 pipelined cache hits, all correct")
        # unique wildcard names: all go upstream, pipelined over the pool
        uniq = ["%s-%d.wild.example.test" % (h.unique_label("p"), i) for i in range(100)]
        ans = self._pipeline(uniq, 9000)
        for i in range(100):
            m = ans[9000 + i]
            self.assertEqual(m.question[0].name.to_text(), uniq[i] + ".")
            self.assertEqual([x[3] for x in h.rrset_texts(m)], ["192.0.2.99"], str(m))
        log("ok: 100 pipelined unique names, all correct")

    def test_slow_and_fast_mixed(self):
        """Ten slow names and 50 fast ones pipelined: every fast answer
        arrives before any slow one."""
        slow = ["%s-%d.slow.example.test" % (h.unique_label("s"), i) for i in range(10)]
        fast = ["h%d.example.test" % i for i in range(200, 250)]
        names = slow + fast
        s = self._connect()
        order = []
        try:
            s.sendall(b"".join(
                struct.pack("!H", len(w)) + w
                for w in (h.make_query(n, "A", qid=100 + i).to_wire()
                          for i, n in enumerate(names))))
            while len(order) < len(names):
                m = dns.message.from_wire(h.recv_msg(s))
                order.append(m)
        finally:
            s.close()
        ids = [m.id - 100 for m in order]
        first_slow = min(i for i, x in enumerate(ids) if x < 10)
        self.assertEqual(sorted(ids), list(range(len(names))), "missing or extra answers")
        self.assertGreaterEqual(first_slow, len(fast), "a slow answer came before fast ones: "
                                "positions of slow answers %s" % [
                                    i for i, x in enumerate(ids) if x < 10])
        for m in order:
            i = m.id - 100
            self.assertEqual(m.question[0].name.to_text(), names[i] + ".")
            want = "192.0.2.200" if i < 10 else h.host_addr(200 + i - 10)
            self.assertEqual([x[3] for x in h.rrset_texts(m)], [want], str(m))
        log("ok: 50 fast answers overtook 10 slow ones; all 60 correct")


if __name__ == "__main__":
    h.main()
