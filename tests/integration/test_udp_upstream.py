#!/usr/bin/python3
"""A udp:// upstream: answers come over UDP, a truncated upstream answer is
asked again over TCP (the client gets the whole answer), and the fallback
takes over when the UDP upstream is gone."""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.rcode  # noqa: E402


class UdpUpstream(h.IntegrationTest):

    def test_udp_then_tc_retry_over_tcp(self):
        up = self.start_resolver(whoami="local")
        d = self.start_dnsveil(upstream=[up.url("udp")])

        m = h.udp_query(d.port, "www.example.test", "A")
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        self.assertEqual([r[3] for r in h.rrset_texts(m)], ["192.0.2.1"],
                         "www's A record over a udp:// upstream")
        s0 = d.stats()
        self.assertGreater(s0["upstream_answers"], 0)
        self.assertEqual(s0["upstream_tc_retries"], 0)

        # ~3000 bytes: the upstream's UDP answer (EDNS 1232) is truncated,
        # dnsveil asks again over TCP and the TCP client gets all of it
        m = h.tcp_query(d.port, "big.example.test", "TXT")
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        self.assertFalse(m.flags & 0x0200, "no TC over TCP")
        got = [s.decode() for rr in m.answer for r in rr for s in r.strings]
        self.assertEqual(got, h.big_txt_strings(), "the whole TXT record")
        s1 = d.stats()
        self.assertEqual(s1["upstream_tc_retries"], 1,
                         "one truncated UDP answer retried over TCP")
        log("ok: big TXT (%d strings) through a udp:// upstream after a TC retry"
            % len(got))

    def test_udp_upstream_gone_fallback_answers(self):
        up = self.start_resolver(whoami="local")
        fb = self.start_resolver(whoami="fallback")
        d = self.start_dnsveil(upstream=[up.url("udp")], fallback=[fb],
                               config=h.base_config(pool={"hedge-delay-ms": 200,
                                                          "timeout-ms": 500}))
        name = h.unique_label("a") + ".whoami.example.test"
        self.assertEqual(h.txt_value(h.udp_query(d.port, name, "TXT")), "local")
        up.kill()
        for i in range(5):
            name = h.unique_label("b") + ".whoami.example.test"
            m = h.udp_query(d.port, name, "TXT", timeout=h.scaled(5))
            self.assertEqual(m.rcode(), dns.rcode.NOERROR)
            self.assertEqual(h.txt_value(m), "fallback")
        log("ok: udp:// upstream killed, the fallback answered 5 of 5")


if __name__ == "__main__":
    h.main()
