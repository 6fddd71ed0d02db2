#!/usr/bin/python3
"""UDP to a loopback resolver (pool.loopback-udp, pool.udp-max-inflight):
the misses of every client (UDP, TCP, DoT) go over UDP to a tcp:// upstream
on loopback, a truncated UDP answer is asked again over TCP and the client
gets all of it,
and a burst of distinct names from dnsperf is answered whole and NOERROR,
nothing lost, with the real resolver of DV_RESOLVER (Unbound or kresd)
behind dnsveil: more queries than the resolver's UDP receive buffer holds
(256 datagrams with Linux's default) wait in dnsveil for a free UDP id
instead of being dropped there and turned into SERVFAIL.

Sockets shared (pool.udp-socket-queries): N misses one after the other go
out on N/K sockets (upstream_udp_sockets, and the descriptors the worker
opens: strace); the burst's queries, many in flight at once, share a
socket per worker until it has carried its 256 (about 4,000/256 sockets,
where a socket per query in flight made at least 64 per worker) and leave
in sendmmsg batches (strace: every query to the resolver in a sendmmsg,
several per call); a late UDP answer from a slow authority (after
pool.timeout-ms, the query answered over TCP) retires its socket, and the
next query opens a new one."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.rrset  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402

BURST = 4000  # distinct names, 1,000 in flight


class LoopbackUdp(h.IntegrationTest):

    def tcp_responder(self, answer, port=0):
        """A small DNS-over-TCP responder on 127.0.0.1:`port` (0: a free
        one), closed at the test's end: every message read on a connection
        is answered with answer(wire).  Returns its port."""
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(srv.close)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port))
        srv.listen(16)

        def serve(conn):
            with conn:
                while True:
                    try:
                        h.send_msg(conn, answer(h.recv_msg(conn)))
                    except Exception:  # noqa: BLE001 - closed
                        return

        def accept():
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                threading.Thread(target=serve, args=(conn,), daemon=True).start()
        threading.Thread(target=accept, daemon=True).start()
        return srv.getsockname()[1]

    def test_udp_client_tc_retried_over_tcp(self):
        up = self.start_resolver(whoami="local")
        d = self.start_dnsveil(upstream=[up.url("tcp")])

        m = h.udp_query(d.port, "www.example.test", "A")
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        self.assertEqual([r[3] for r in h.rrset_texts(m)], ["192.0.2.1"])
        self.assertEqual(d.stats()["upstream_tc_retries"], 0)

        # ~3000 bytes of TXT: the resolver's UDP answer to dnsveil (EDNS
        # 1232) is truncated, dnsveil asks it again over TCP; the UDP
        # client (4096-byte buffer) gets all of it, over UDP or after its
        # own TC over TCP
        q = h.make_query("big.example.test", "TXT", payload=4096)
        m, _ = dns.query.udp_with_fallback(q, "127.0.0.1", port=d.port,
                                           timeout=h.scaled(5))
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        got = [s.decode() for rr in m.answer for r in rr for s in r.strings]
        self.assertEqual(got, h.big_txt_strings(), "the whole TXT record")
        st = d.stats()
        self.assertEqual(st["upstream_tc_retries"], 1,
                         "the UDP client's miss went to the tcp:// upstream over "
                         "UDP (truncated there, then asked over TCP): %s"
                         % {k: st[k] for k in ("upstream_tc_retries", "upstream_queries")})
        log("ok: a UDP client's miss over UDP to tcp://%s, TC retried over TCP, "
            "%d TXT strings" % (up.port, len(got)))

    def test_stream_clients_misses_over_udp(self):
        """The misses of TCP and DoT clients go over UDP to the loopback
        tcp:// upstream too (Knot Resolver and Unbound spend two to three
        times the CPU per query on pipelined TCP); a truncated UDP answer
        is asked again over TCP and the TCP client gets all of it."""
        up = self.start_resolver(whoami="local")
        d = self.start_dnsveil(upstream=[up.url("tcp")], listen=["dns", "tls"],
                               config=h.dot_config(), workers=1)
        m = h.tcp_query(d.port, "www.example.test", "A")
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        self.assertEqual([r[3] for r in h.rrset_texts(m)], ["192.0.2.1"])
        self.assertEqual(d.stats()["upstream_tc_retries"], 0)

        # ~3000 bytes of TXT over TCP: truncated at the resolver's UDP
        # answer (EDNS 1232), asked again over TCP, whole to the client
        m = h.tcp_query(d.port, "big.example.test", "TXT")
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        self.assertFalse(m.flags & dns.flags.TC, "no TC over TCP")
        got = [s.decode() for rr in m.answer for r in rr for s in r.strings]
        self.assertEqual(got, h.big_txt_strings(), "the whole TXT record")
        self.assertEqual(d.stats()["upstream_tc_retries"], 1,
                         "the TCP client's miss was asked over UDP first")
        sockets = d.stats()["upstream_udp_sockets"]

        # DoT clients (kdig, verifying the certificate): the same, on the
        # shared UDP socket (no new one); the TXT on a second dnsveil,
        # whose cache does not hold it yet
        names = [("h%d.example.test" % i, "A") for i in (11, 12)]
        r = h.kdig_tls(d.tls_port, names, "+keepopen")
        self.assertEqual(r.rc, 0, r.stderr)
        self.assertEqual([m.get("RCODE") for m in r.messages], [0, 0], r.stdout)
        st = d.stats()
        self.assertEqual(st["upstream_udp_sockets"], sockets, st)
        u = h.upstream_stats(st, up.url("tcp"))
        self.assertEqual(u["state"], "up", u)
        d2 = self.start_dnsveil(upstream=[up.url("tcp")], listen=["dns", "tls"],
                                config=h.dot_config(), workers=1)
        r = h.kdig_tls(d2.tls_port, [("big.example.test", "TXT")])
        self.assertEqual(r.rc, 0, r.stderr)
        got = [s for rr in r.messages[0].get("answerRRs") or [] for s in
               re.findall(r'"([^"]*)"', rr.get("rdataTXT", ""))]
        self.assertEqual(got, h.big_txt_strings(), r.stdout)
        self.assertEqual(d2.stats()["upstream_tc_retries"], 1,
                         "the DoT client's miss was asked over UDP first")
        log("ok: TCP and DoT clients' misses over UDP to tcp://%s, TC retried over TCP"
            % up.port)

    def test_oversized_udp_answer_over_tcp(self):
        """A loopback resolver that ignores the EDNS size dnsveil asks
        with (1232) and sends an 8.4 KB answer over UDP (a small responder
        here; no real resolver does this): larger than what dnsveil reads
        a datagram into (4 KiB), so it is taken as truncated and the
        question is asked again over TCP, whose short answer the client
        gets."""
        port = h.free_port()  # free for UDP and TCP both
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(udp.close)
        udp.bind(("127.0.0.1", port))

        def answer(wire, many):
            q = dns.message.from_wire(wire)
            r = dns.message.make_response(q)
            addrs = ["2001:db8::%x" % (i + 1) for i in range(300)] if many \
                else ["2001:db8::9"]
            if q.question[0].rdtype == dns.rdatatype.AAAA:  # else NODATA
                r.answer.append(dns.rrset.from_text_list(q.question[0].name, 300, "IN",
                                                         "AAAA", addrs))
            return r.to_wire(max_size=65535)

        def serve_udp():
            while True:
                try:
                    wire, addr = udp.recvfrom(4096)
                    udp.sendto(answer(wire, True), addr)
                except Exception:  # noqa: BLE001 - closed
                    return

        self.tcp_responder(lambda wire: answer(wire, False), port)
        threading.Thread(target=serve_udp, daemon=True).start()

        d = self.start_dnsveil(upstream=["udp://127.0.0.1:%d" % port], workers=1,
                               config=h.base_config())
        s0 = d.stats()
        m = h.udp_query(d.port, "big.example.test", "AAAA", timeout=h.scaled(5))
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        self.assertEqual([r[3] for r in h.rrset_texts(m)], ["2001:db8::9"],
                         "the TCP answer, not the oversized UDP one")
        s1 = d.stats()
        self.assertEqual(s1["upstream_tc_retries"] - s0["upstream_tc_retries"], 1, s1)
        self.assertEqual(s1["upstream_udp_retired"], s0["upstream_udp_retired"],
                         "the oversized answer was the awaited one: no retirement")
        log("ok: an 8.4 KB UDP answer was taken as truncated and asked again over TCP")

    def test_tcp_only_resolver(self):
        """A loopback resolver that listens on TCP only (a small responder
        here): the UDP query meets a closed port (ICMP), dnsveil asks over
        TCP, the UDP client gets its answer, the server stays up, and
        later UDP clients' queries go straight over TCP."""
        def answer(wire):
            q = dns.message.from_wire(wire)
            r = dns.message.make_response(q)
            r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN",
                                                "A", "192.0.2.7"))
            return r.to_wire()
        port = self.tcp_responder(answer)

        url = "tcp://127.0.0.1:%d" % port
        d = self.start_dnsveil(upstream=[url], config=h.base_config(), workers=1)
        for i in range(5):
            m = h.udp_query(d.port, "t%d.example.test" % i, "A", timeout=h.scaled(5))
            self.assertEqual(m.rcode(), dns.rcode.NOERROR)
            self.assertEqual([r[3] for r in h.rrset_texts(m)], ["192.0.2.7"])
        u = h.upstream_stats(d.stats(), url)
        self.assertEqual(u["state"], "up", u)
        h.wait_for(lambda: "its UDP port is closed" in d.stderr_text(), h.scaled(5),
                   what="the log line saying queries go over TCP")
        log("ok: a TCP-only loopback resolver answers UDP clients over TCP, stays up")

    def burst(self, scheme):
        up = self.start_resolver(whoami="local")
        workers = 2
        d = self.start_dnsveil(upstream=[up.url(scheme)], config=h.base_config(),
                               workers=workers)
        qfile = os.path.join(d.dir, "burst.txt")
        label = h.unique_label("b")
        with open(qfile, "w") as f:
            for i in range(BURST):
                f.write("%s-%d.wild.example.test A\n" % (label, i))
        st0 = d.stats()
        result = {}
        calls = self.trace(d, ("sendmmsg",), lambda: result.update(
            run=h.dnsperf(d.port, qfile, "-c", "10", "-q", "1000", "-n", "1", "-t", "5")))
        res, out = result["run"]
        st1 = d.stats()
        log(out)
        delta = {k: st1[k] - st0[k] for k in ("servfail", "upstream_timeouts",
                                              "upstream_queries", "cache_misses")}
        log("%s burst: %s, dnsveil %s" % (scheme, res, delta))
        self.assertEqual(res["rc"], 0, out)
        self.assertEqual(res.get("completed"), BURST, "every query answered:\n" + out)
        self.assertEqual(res.get("noerror"), BURST, "every answer NOERROR:\n" + out)
        self.assertEqual(delta["servfail"], 0, delta)
        self.assertEqual(delta["upstream_timeouts"], 0,
                         "no UDP query lost on the way to the resolver: %s" % delta)
        # the queries in flight share a socket until it has carried
        # pool.udp-socket-queries (256): one more per worker at most for
        # the last part-used one
        sockets = st1["upstream_udp_sockets"] - st0["upstream_udp_sockets"]
        log("%s burst: %d upstream UDP sockets for %d names, %d workers" % (
            scheme, sockets, BURST, workers))
        self.assertLessEqual(sockets, BURST // 256 + 2 * workers,
                             "sockets shared: %d" % sockets)
        # every query to the resolver left in a sendmmsg on a socket
        # connected to it, several per call
        batches, sent = 0, 0
        for call, fd, ret in calls:
            if call == "sendmmsg" and fd.endswith("->127.0.0.1:%d]>" % up.port):
                batches += 1
                sent += ret
        queries = st1["upstream_queries"] - st0["upstream_queries"]
        log("%s burst: %d queries to the resolver, %d sent in %d sendmmsg calls" % (
            scheme, queries, sent, batches))
        self.assertEqual(sent, queries, "every query in a sendmmsg")
        self.assertGreaterEqual(sent, 2 * batches, "several queries per sendmmsg")
        log("ok: %d distinct names over UDP through %s://, all NOERROR" % (BURST, scheme))

    def sequential(self, d, n, label):
        for i in range(n):
            m = h.udp_query(d.port, "%s-%d.wild.example.test" % (label, i), "A")
            self.assertEqual(m.rcode(), dns.rcode.NOERROR)

    def test_sockets_retired_after_k_queries(self):
        """One worker, 200 misses one after the other: with
        pool.udp-socket-queries 10, 20 sockets (strace of the worker sees
        them made); with 1, one per query."""
        up = self.start_resolver(whoami="local")
        for k in (10, 1):
            d = self.start_dnsveil(upstream=[up.url("tcp")], workers=1,
                                   config=h.base_config(pool={"udp-socket-queries": k}))
            self.sequential(d, 3, h.unique_label("w"))  # warm: the TCP side too
            s0 = d.stats()
            n = 200
            made = self.traced_sockets(d, lambda: self.sequential(d, n, h.unique_label("s")))
            s1 = d.stats()
            got = s1["upstream_udp_sockets"] - s0["upstream_udp_sockets"]
            log("udp-socket-queries %d: %d sequential misses, %d UDP sockets counted, "
                "%d UDP sockets made (strace)" % (k, n, got, made))
            self.assertEqual(s1["upstream_queries"] - s0["upstream_queries"], n)
            want = n // k
            # the warm-up left its socket part-used: one more at most
            self.assertGreaterEqual(got, want - 1)
            self.assertLessEqual(got, want + 1)
            self.assertEqual(made, got, "strace sees what the counter says")
            self.stop_dnsveil(d)

    def traced_sockets(self, d, fn):
        """UDP sockets made by dnsveil while fn() runs (strace -f)."""
        return sum(1 for call, _, _ in self.trace(d, ("socket",), fn) if call == "socket")

    def trace(self, d, names, fn):
        """The system calls `names` (socket: UDP ones only) dnsveil made
        while fn() ran, as (name, first argument, result), from strace -ff
        (a file per thread, so no call is split by another's) -yy (a
        socket argument reads "13<UDP:[127.0.0.1:41234->127.0.0.1:53]>")."""
        strace = shutil.which("strace", path="/usr/bin:/bin:/usr/sbin")
        self.assertIsNotNone(strace, "strace is a test dependency")
        prefix = os.path.join(d.dir, "strace")
        p = subprocess.Popen([strace, "-ff", "-qq", "-yy", "-e", "trace=" + ",".join(names),
                              "-e", "abbrev=all", "-o", prefix, "-p", str(d.pid)],
                             stderr=subprocess.DEVNULL)
        try:
            # strace attaches before it writes anything
            time.sleep(h.scaled(0.5))
            fn()
        finally:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=h.scaled(10))
        calls = []
        line_re = re.compile(r"^(\w+)\(([^,]+), .* = (-?\d+)")
        for name in os.listdir(d.dir):
            if not name.startswith("strace."):
                continue
            with open(os.path.join(d.dir, name)) as f:
                for line in f:
                    m = line_re.match(line)
                    if not m or m.group(1) not in names or int(m.group(3)) < 0:
                        continue
                    if m.group(1) == "socket":
                        if "SOCK_DGRAM" not in line:
                            continue
                        calls.append(("socket", None, int(m.group(3))))
                    else:
                        calls.append((m.group(1), m.group(2), int(m.group(3))))
            os.unlink(os.path.join(d.dir, name))
        return calls

    def test_late_answer_retires_socket(self):
        """A slow authority as the loopback tcp:// upstream (its A answers
        come after 1 s): the UDP attempt gives up after 300 ms, and so
        does the TCP one that follows (SERVFAIL: the authority is slower
        than pool.timeout-ms); the UDP answer, late, lands on the idle
        socket: dropped, counted, the socket retired, and the next query
        opens a new one."""
        slow = self.start_slow(delay=h.scaled(1.0))
        url = "tcp://127.0.0.1:%d" % slow.port
        d = self.start_dnsveil(upstream=[url], workers=1, config=h.base_config(
            pool={"timeout-ms": 300, "hedge-delay-ms": 5000, "query-timeout-ms": 5000}))
        # an apex SOA (answered at once) opens the socket
        m = h.udp_query(d.port, "slow.example.test", "SOA", timeout=h.scaled(5))
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        s0 = d.stats()
        m = h.udp_query(d.port, "a.slow.example.test", "A", timeout=h.scaled(5))
        self.assertEqual(m.rcode(), dns.rcode.SERVFAIL, m.to_text())
        h.wait_for(lambda: d.stats()["upstream_udp_retired"] > s0["upstream_udp_retired"],
                   h.scaled(5), what="the late UDP answer retiring its socket")
        s1 = d.stats()
        self.assertEqual(s1["upstream_timeouts"] - s0["upstream_timeouts"], 2, s1)
        self.assertEqual(s1["upstream_dropped"] - s0["upstream_dropped"], 1, s1)
        self.assertEqual(s1["upstream_udp_sockets"], s0["upstream_udp_sockets"],
                         "the A query reused the SOA's socket")
        m = h.udp_query(d.port, "slow.example.test", "NS", timeout=h.scaled(5))
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        s2 = d.stats()
        self.assertEqual(s2["upstream_udp_sockets"] - s1["upstream_udp_sockets"], 1,
                         "a new socket after the retired one")
        log("ok: a late UDP answer from the slow authority was dropped and retired its "
            "socket; the next query went out on a new one")

    def test_burst_default_tcp_upstream(self):
        self.burst("tcp")

    def test_burst_udp_upstream(self):
        self.burst("udp")


if __name__ == "__main__":
    h.main()
