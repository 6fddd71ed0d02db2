#!/usr/bin/python3
"""Do53 UDP under bursts: the listener reads datagrams in batches
(recvmmsg) and sends its answers in batches (sendmmsg), cache hits at the
end of the batch that asked them and upstream answers at the end of the
loop turn that brought them.  Every query of a burst from many client
sockets, cache hits and misses mixed, must be answered exactly once, to
the socket that asked, with the query's id and question and the right
address; and a lone query is answered at once, not held for a batch."""

import os
import random
import select
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.message  # noqa: E402
import dns.rcode  # noqa: E402

SOCKETS = 100
WAVES = 10  # each socket sends one query per wave: 1,000 queries in all
WAVE = SOCKETS  # datagrams in flight at most: far below any socket buffer


class UdpBurst(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound()
        self.dv = self.start_dnsveil(upstream=[self.ub], config=h.base_config())

    def _burst(self, names):
        """Sends names[k] from socket k % SOCKETS, one wave of SOCKETS
        queries after another, each wave all at once; returns
        {(socket, id): [answers]} and the queries {(socket, id): name}."""
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(SOCKETS)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            self.addCleanup(s.close)
        by_fd = {s.fileno(): k for k, s in enumerate(socks)}
        ids = [random.sample(range(65536), WAVES) for _ in socks]
        asked, got = {}, {}
        deadline = time.monotonic() + h.scaled(30)
        for wave in range(0, len(names), WAVE):
            pending = 0
            for j, name in enumerate(names[wave:wave + WAVE]):
                k = j % SOCKETS
                qid = ids[k][wave // WAVE]
                q = dns.message.make_query(name, "A")
                q.id = qid
                asked[(k, qid)] = name
                socks[k].sendto(q.to_wire(), ("127.0.0.1", self.dv.port))
                pending += 1
            while pending and time.monotonic() < deadline:
                ready, _, _ = select.select(socks, [], [], 0.5)
                for s in ready:
                    while True:
                        try:
                            wire = s.recv(4096)
                        except BlockingIOError:
                            break
                        m = dns.message.from_wire(wire)
                        got.setdefault((by_fd[s.fileno()], m.id), []).append(m)
                        pending -= 1
            self.assertEqual(pending, 0, "wave %d: %d queries unanswered after %.0f s"
                             % (wave // WAVE, pending, h.scaled(30)))
        # late duplicates would show up now
        time.sleep(0.2)
        for k, s in enumerate(socks):
            while True:
                try:
                    wire = s.recv(4096)
                except BlockingIOError:
                    break
                m = dns.message.from_wire(wire)
                got.setdefault((k, m.id), []).append(m)
        return asked, got

    def _check(self, asked, got):
        stray = sorted(set(got) - set(asked))
        self.assertEqual(stray, [], "answers to queries never sent from that socket")
        missing = sorted(set(asked) - set(got))
        self.assertEqual(missing, [], "queries without an answer")
        for key, name in asked.items():
            answers = got[key]
            self.assertEqual(len(answers), 1, "%s %r answered %d times"
                             % (key, name, len(answers)))
            m = answers[0]
            self.assertEqual(m.rcode(), dns.rcode.NOERROR, "%r: %s" % (name, m))
            self.assertEqual(str(m.question[0].name), name + ".", "%r: %s" % (name, m))
            i = int(name.split(".")[0][1:])
            self.assertEqual([x[3] for x in h.rrset_texts(m)], [h.host_addr(i)],
                             "%r: %s" % (name, m))

    def test_burst_hits_and_misses(self):
        """1,000 queries from 100 sockets in waves of 100: the first 500
        names were asked before (cache hits, answered in the batch that
        read them), the other 500 are new (misses, answered from the
        upstream later), interleaved in every wave."""
        hits = ["h%d.example.test" % i for i in range(500)]
        for name in hits:
            h.udp_query(self.dv.port, name)
        misses = ["h%d.example.test" % i for i in range(500, 1000)]
        names = [n for pair in zip(hits, misses) for n in pair]
        asked, got = self._burst(names)
        self._check(asked, got)
        log("ok: %d queries from %d sockets, each answered once with its id and question"
            % (len(asked), SOCKETS))
        st = self.dv.stats()
        self.assertEqual(st.get("dropped_send", 0), 0, "answers dropped: %r" % st)
        log("ok: dropped_send 0")

    def test_lone_query_not_held(self):
        """At low load an upstream answer leaves in the loop turn that
        brought it: 50 misses one after another, each answered well within
        the upstream's own time plus a few ms (nothing waits for a batch to
        fill or a timer)."""
        worst = 0.0
        for i in range(50):
            t = time.monotonic()
            m = h.udp_query(self.dv.port, "h%d.example.test" % i)
            worst = max(worst, time.monotonic() - t)
            self.assertEqual([x[3] for x in h.rrset_texts(m)], [h.host_addr(i)])
        log("ok: 50 lone misses, slowest %.1f ms" % (worst * 1000))
        self.assertLess(worst, h.scaled(1.0), "a lone query was held")


if __name__ == "__main__":
    h.main()
