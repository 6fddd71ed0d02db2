#!/usr/bin/python3
"""UDP to a loopback resolver (pool.loopback-udp, pool.udp-max-inflight):
the misses of UDP clients go over UDP to a tcp:// upstream on loopback, a
truncated UDP answer is asked again over TCP and the client gets all of it,
and a burst of distinct names from dnsperf is answered whole and NOERROR,
nothing lost, with the real resolver of DV_RESOLVER (Unbound or kresd)
behind dnsveil: more queries than the resolver's UDP receive buffer holds
(256 datagrams with Linux's default) wait in dnsveil for a free UDP id
instead of being dropped there and turned into SERVFAIL."""

import os
import socket
import sys
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.rrset  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

BURST = 4000  # distinct names, 1,000 in flight


class LoopbackUdp(h.IntegrationTest):

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

    def test_tcp_only_resolver(self):
        """A loopback resolver that listens on TCP only (a small responder
        here): the UDP query meets a closed port (ICMP), dnsveil asks over
        TCP, the UDP client gets its answer, the server stays up, and
        later UDP clients' queries go straight over TCP."""
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        self.addCleanup(srv.close)
        port = srv.getsockname()[1]

        def serve(conn):
            with conn:
                while True:
                    try:
                        q = dns.message.from_wire(h.recv_msg(conn))
                    except Exception:  # noqa: BLE001 - closed
                        return
                    r = dns.message.make_response(q)
                    r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN",
                                                        "A", "192.0.2.7"))
                    h.send_msg(conn, r.to_wire())

        def accept():
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                threading.Thread(target=serve, args=(conn,), daemon=True).start()
        threading.Thread(target=accept, daemon=True).start()

        url = "tcp://127.0.0.1:%d" % port
        d = self.start_dnsveil(upstream=[url], config=h.base_config(), workers=1)
        for i in range(5):
            m = h.udp_query(d.port, "t%d.example.test" % i, "A", timeout=h.scaled(5))
            self.assertEqual(m.rcode(), dns.rcode.NOERROR)
            self.assertEqual([r[3] for r in h.rrset_texts(m)], ["192.0.2.7"])
        u = h.upstream_stats(d.stats(), url)
        self.assertEqual(u["state"], "up", u)
        h.wait_for(lambda: "its UDP port is closed" in d.stderr_text(), h.scaled(5),
                   what="the log line saying UDP clients' queries go over TCP")
        log("ok: a TCP-only loopback resolver answers UDP clients over TCP, stays up")

    def burst(self, scheme):
        up = self.start_resolver(whoami="local")
        d = self.start_dnsveil(upstream=[up.url(scheme)], config=h.base_config())
        qfile = os.path.join(d.dir, "burst.txt")
        label = h.unique_label("b")
        with open(qfile, "w") as f:
            for i in range(BURST):
                f.write("%s-%d.wild.example.test A\n" % (label, i))
        st0 = d.stats()
        res, out = h.dnsperf(d.port, qfile, "-c", "10", "-q", "1000", "-n", "1",
                             "-t", "5")
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
        log("ok: %d distinct names over UDP through %s://, all NOERROR" % (BURST, scheme))

    def test_burst_default_tcp_upstream(self):
        self.burst("tcp")

    def test_burst_udp_upstream(self):
        self.burst("udp")


if __name__ == "__main__":
    h.main()
