#!/usr/bin/python3
"""What the encrypted-upstream tests (test_upstream_tls.py, _doh.py, _doq.py)
share: asking a dnsveil front "who answered" (each Unbound behind it serves
whoami.example.test TXT with its own name) and a burst of unique queries.
Builds on harness.py; everything stays on loopback."""

import socket
import time

import dns.message
import dns.rcode

import harness as h
from harness import log

CLIENT_TIMEOUT = h.scaled(5.0)


class WhoamiChecks:
    """Mixin for h.IntegrationTest classes."""

    def whoami(self, d, tcp=False, timeout=CLIENT_TIMEOUT):
        name = h.unique_label("w") + ".whoami.example.test"
        q = h.tcp_query if tcp else h.udp_query
        return q(d.port, name, "TXT", timeout=timeout)

    def assert_whoami(self, d, want="local", n=4, what=""):
        for i in range(n):
            m = self.whoami(d, tcp=bool(i % 2))
            self.assertEqual(m.rcode(), dns.rcode.NOERROR, "%s: rcode %s" % (
                what, dns.rcode.to_text(m.rcode())))
            self.assertEqual(h.txt_value(m), want, "%s: answer from %r, expected %r" % (
                what, h.txt_value(m), want))
        log("ok: %d queries answered by %s %s" % (n, want, what))

    def burst(self, d, n):
        """`n` UDP queries for unique names sent at once from one socket;
        returns {qid: message} of the answers received."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.settimeout(CLIENT_TIMEOUT)
        want = {}
        try:
            for i in range(n):
                q = h.make_query(h.unique_label("b%d-" % i) + ".whoami.example.test", "TXT",
                                 qid=i + 1)
                want[i + 1] = q
                s.sendto(q.to_wire(), ("127.0.0.1", d.port))
            got = {}
            deadline = time.monotonic() + h.scaled(10)
            while len(got) < n and time.monotonic() < deadline:
                try:
                    wire, _ = s.recvfrom(65535)
                except socket.timeout:
                    break
                m = dns.message.from_wire(wire)
                if m.id in want and want[m.id].question == m.question:
                    got[m.id] = m
            return got
        finally:
            s.close()
