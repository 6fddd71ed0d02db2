#!/usr/bin/python3
"""Do53 UDP under bursts: the listener reads datagrams in batches
(recvmmsg) and sends its answers in batches (sendmmsg), cache hits at the
end of the batch that asked them and upstream answers at the end of the
loop turn that brought them.  Every query of a burst from many client
sockets, cache hits and misses mixed, must be answered exactly once, to
the socket that asked, with the query's id and question and the right
address; answers an upstream sends together leave in a few sendmmsg
calls; and a lone query is answered at once, not held for a batch.

Under heavy load (limits.udp-collect-rate) a worker waits 50 us before
each poll to read more datagrams per wake-up: dnsperf's flood of cache
hits starts it (udp_collecting) and every query is still answered once;
a light load never does, and 0 turns it off.

Not tested here: a sendmmsg that sends only part of the queue, or fails
with EAGAIN.  Over loopback a UDP send does not block (the datagram is
handed to the receiving socket at once, or dropped there when its buffer
is full), so the kernel cannot be made to refuse dnsveil's sends without a
firewall or traffic-control set-up of the host; the listener keeps the
unsent tail in its queue and waits for the socket to be writable."""

import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.message  # noqa: E402
import dns.rcode  # noqa: E402

STRACE = shutil.which("strace") or "/usr/bin/strace"
SOCKETS = 100
WAVES = 10  # each socket sends one query per wave: 1,000 queries in all
WAVE = SOCKETS  # datagrams in flight at most: far below any socket buffer


class UdpBurst(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound()
        # the upstream answers come back together on the pipelined TCP
        # connection (pool.loopback-udp off): over UDP at most
        # pool.udp-max-inflight of the 100 misses would be in flight at the
        # paused upstream (test_loopback_udp.py tests that path)
        self.dv = self.start_dnsveil(upstream=[self.ub], config=h.base_config(
            pool={"loopback-udp": False}))

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
        self.assertEqual(st["dropped_send"], 0, "answers dropped: %r" % st)
        log("ok: dropped_send 0")

    def _traced(self, pid):
        """Every thread of `pid` is traced (strace has attached)."""
        tasks = os.listdir("/proc/%d/task" % pid)
        for t in tasks:
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                if re.search(r"^TracerPid:\s+0$", f.read(), re.M):
                    return False
        return bool(tasks)

    def test_upstream_answers_share_a_sendmmsg(self):
        """100 misses from one client socket wait at a paused upstream
        (SIGSTOP); when it resumes, its answers come back together over the
        pipelined TCP connection and dnsveil sends them to the client in a
        few sendmmsg calls, not one sendto per answer (what it did before:
        100).  Counted with strace on every thread: the system calls that
        send to the client's port, and every sendmmsg."""
        n = 100
        pid = self.dv.proc.pid
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind(("127.0.0.1", 0))
        self.addCleanup(c.close)
        cport = c.getsockname()[1]
        trace = os.path.join(self.dv.dir, "strace.out")
        st0 = self.dv.stats()
        st = subprocess.Popen([STRACE, "-f", "-qq", "-e", "trace=sendto,sendmsg,sendmmsg",
                               "-o", trace, "-p", str(pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stopped = False
        try:
            h.wait_for(lambda: self._traced(pid), h.scaled(10), interval=0.05,
                       what="strace to attach to every thread of dnsveil")
            os.kill(self.ub.proc.pid, signal.SIGSTOP)
            stopped = True
            ids = random.sample(range(65536), n)
            for i, qid in enumerate(ids):
                q = dns.message.make_query("h%d.example.test" % i, "A")
                q.id = qid
                c.sendto(q.to_wire(), ("127.0.0.1", self.dv.port))
            h.wait_for(lambda: self.dv.stats()["upstream_queries"] -
                       st0["upstream_queries"] >= n, h.scaled(10),
                       what="dnsveil to forward the %d queries" % n)
            os.kill(self.ub.proc.pid, signal.SIGCONT)
            stopped = False
            c.settimeout(h.scaled(5))
            got = {}
            for _ in range(n):
                m = dns.message.from_wire(c.recv(4096))
                got.setdefault(m.id, []).append(m)
        finally:
            if stopped:
                os.kill(self.ub.proc.pid, signal.SIGCONT)
            st.send_signal(signal.SIGINT)
            st.wait(h.scaled(10))
        self.assertEqual(sorted(got), sorted(ids), "every query answered")
        for i, qid in enumerate(ids):
            self.assertEqual(len(got[qid]), 1, "id %d answered twice" % qid)
            self.assertEqual([x[3] for x in h.rrset_texts(got[qid][0])], [h.host_addr(i)])
        with open(trace) as f:
            calls = [ln for ln in f if re.search(r"\bsendmmsg\(", ln) or (
                re.search(r"\b(sendto|sendmsg)\(", ln) and "htons(%d)" % cport in ln)]
        log("%d upstream answers released at once: %d system calls sent them to the client "
            "(one sendto each before)" % (n, len(calls)))
        self.assertLess(len(calls), n // 4, "sends to the client for %d answers:\n%s" % (
            n, "".join(calls[:20])))

    def _flood(self, rate, opts):
        """One worker with limits.udp-collect-rate `rate`; the 1,000
        cache-hit names of a file asked once (warm), then by dnsperf with
        `opts`.  Returns dnsperf's numbers and the udp_collecting
        counter's increase."""
        d = self.start_dnsveil(upstream=[self.ub], workers=1,
                               config=h.base_config(limits={"udp-collect-rate": rate}))
        qfile = os.path.join(d.dir, "hits.txt")
        with open(qfile, "w") as f:
            for i in range(1000):
                f.write("h%d.example.test A\n" % i)
        res, out = h.dnsperf(d.port, qfile, "-n", "1", "-q", "100")
        self.assertEqual(res.get("noerror"), 1000, out)
        st0 = d.stats()
        res, out = h.dnsperf(d.port, qfile, "-c", "10", "-q", "500", *opts)
        st1 = d.stats()
        log("udp-collect-rate %d, dnsperf %s: %s; udp_collecting +%d" % (
            rate, " ".join(opts), {k: res.get(k) for k in ("completed", "lost", "qps",
                                                          "avg_latency")},
            st1["udp_collecting"] - st0["udp_collecting"]))
        self.assertEqual(res["rc"], 0, out)
        self.assertEqual(res.get("lost"), 0, out)
        self.assertEqual(res.get("noerror"), res.get("completed"), out)
        self.assertEqual(st1["answers"] - st0["answers"], res.get("completed"))
        self.stop_dnsveil(d)
        return res, st1["udp_collecting"] - st0["udp_collecting"]

    def test_flood_collects(self):
        """A flood of cache hits (dnsperf, 500 in flight, 3 s) above the
        worker's limits.udp-collect-rate (set to 2,000 a second here, so
        that the ASan build's slower worker reaches it too) starts the
        collecting, and every query is answered exactly once; at 200
        queries a second it never starts; with 0 it never starts even
        under the flood."""
        res, started = self._flood(2000, ("-l", "3"))
        self.assertGreater(res["qps"], 2000, "the flood exceeded the rate")
        self.assertGreaterEqual(started, 1, "collecting under a flood")
        _, started = self._flood(2000, ("-l", "3", "-Q", "200"))
        self.assertEqual(started, 0, "no collecting at 200 queries a second")
        _, started = self._flood(0, ("-l", "3"))
        self.assertEqual(started, 0, "limits.udp-collect-rate 0: never")
        log("ok: a flood starts collecting, light load and rate 0 never do")

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
