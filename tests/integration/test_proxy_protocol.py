#!/usr/bin/python3
"""PROXY protocol v2 input (README "Behind a load balancer: the PROXY
protocol"), through Debian's haproxy in TCP mode with send-proxy-v2 in front
of dnsveil's plain TCP, DoT and DoH listeners (`?proxy-protocol`).

The clients connect to haproxy from 127.0.0.2, haproxy connects to dnsveil
from 127.0.0.1 (the only address in proxy-protocol.from), so the two
addresses differ:
- the query log names 127.0.0.2 as the client on every transport, and the
  policy puts it in the group its CIDR names (lab: a blocked name is
  REFUSED), while a client asking dnsveil's plain listener directly from
  127.0.0.1 is the default group (NXDOMAIN);
- haproxy round-robins the TCP frontend over two dnsveil processes, and
  both see the real client;
- kdig (TCP, TLS), dnspython (TCP, TLS) and curl (DoH) are the clients;
- a connection with a valid PROXY header from an address not in
  proxy-protocol.from is closed at once (dnsveil_proxy_refused_total);
- a connection without a header (a DNS query, a TLS ClientHello), with a
  PROXY v1 text header, with a truncated header, or with a header that
  never completes is closed and counted (dnsveil_proxy_header_errors_total,
  read from /metrics);
- a PROXY header sent to a listener without the option is refused promptly
  instead of hanging until the read timeout (issue 14);
- resumption across replicas: haproxy round-robins DoT over two dnsveil
  processes that share tls.ticket-key-file; openssl s_client (reaching
  that frontend from 127.0.0.2 through a relay frontend of the same
  haproxy, since s_client cannot bind an address) gets a ticket from one
  and resumes on the other; each replica's handshake debug line names the
  real client, 127.0.0.2, and whether it resumed.  Without the shared file
  (the control) the second connection does not resume.  kdig 3.2.6 makes a
  full handshake on every connection (it resumes no session, even from one
  server), so it shows the round-robin from 127.0.0.2 only."""
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402
from dvtest.doh import b64url, curl  # noqa: E402

import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

HAPROXY = "/usr/sbin/haproxy"
CLIENT = "127.0.0.2"  # the real client
OTHER = "127.0.0.3"   # a host that is not a configured proxy
SIG = b"\r\n\r\n\x00\r\nQUIT\n"

POLICY = """lists:
  ads: { source: %s, format: domains }
groups:
  default: { block: [ads] }
  lab: { block: [ads], action: refused }
clients:
  - { cidr: 127.0.0.2, group: lab }
proxy-protocol:
  from: [127.0.0.1]
"""


def proxy_v2(src, sport, dst="127.0.0.1", dport=853, tlvs=b""):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlvs
    return SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


class Haproxy:
    """haproxy -db with a config in its own temp dir: one TCP frontend per
    (port, [backend servers]) with send-proxy-v2 to each server, or per
    (port, [servers], source): no PROXY header, connecting from `source`
    (a relay that makes a client on 127.0.0.1 arrive from another
    address at the next frontend)."""

    def __init__(self, frontends):
        self.dir = tempfile.mkdtemp(prefix="dv-haproxy-")
        self.conf = os.path.join(self.dir, "haproxy.cfg")
        lines = ["global", "  maxconn 200", "defaults", "  mode tcp",
                 "  timeout connect 5s", "  timeout client 30s", "  timeout server 30s"]
        for i, (port, servers, *source) in enumerate(frontends):
            lines += ["frontend f%d" % i, "  bind 127.0.0.1:%d" % port, "  default_backend b%d" % i,
                      "backend b%d" % i, "  balance roundrobin"]
            how = "source %s" % source[0] if source else "send-proxy-v2"
            lines += ["  server s%d 127.0.0.1:%d %s" % (j, p, how) for j, p in enumerate(servers)]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = open(os.path.join(self.dir, "haproxy.log"), "wb")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for port, *_ in frontends:
            h.wait_for(lambda: self._listens(port), h.scaled(10), what="haproxy on %d" % port)

    def _listens(self, port):
        if self.proc.poll() is not None:
            raise AssertionError("haproxy exited: %s" % open(self.log.name).read())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # our own process, by PID
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        subprocess.run(["rm", "-rf", self.dir])


class ProxyProtocol(h.IntegrationTest):
    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        self.tmp = tempfile.mkdtemp(prefix="dv-proxy-")
        ads = os.path.join(self.tmp, "ads.txt")
        with open(ads, "w") as f:
            f.write("h9.example.test\n")
        self.policy = POLICY % ads
        self.haproxy = None

    def tearDown(self):
        if self.haproxy:
            self.haproxy.stop()
        super().tearDown()
        subprocess.run(["rm", "-rf", self.tmp])

    def start_dv(self, name, admin=False, limits=None, plain=(), tls=None, debug=False):
        """dnsveil with a plain dns:// listener (readiness, direct clients)
        and tcp, tls and https listeners with ?proxy-protocol; `tls`: more
        keys of its tls section; `debug`: log-level debug (the handshake
        lines)."""
        ports = {s: h.free_port() for s in ("tcp", "tls", "https", "http")}
        qfile = os.path.join(self.tmp, name + ".queries.log")
        cfg = h.dot_config(limits=limits, tls=tls)
        if debug:
            cfg["log-level"] = "debug"
        cfg["log"] = {"format": "json", "queries": "all", "query-file": qfile}
        extra = self.policy
        if admin:
            ports["admin"] = h.free_port()
            extra += "admin:\n  listen: [http://127.0.0.1:%d]\n" % ports["admin"]
        listen = ["dns",
                  "tcp://127.0.0.1:%d?proxy-protocol" % ports["tcp"],
                  "tls://127.0.0.1:%d?proxy-protocol" % ports["tls"],
                  "https://127.0.0.1:%d/dns-query?proxy-protocol" % ports["https"],
                  "http://127.0.0.1:%d/dns-query?proxy-protocol" % ports["http"]] + list(plain)
        dv = h.Dnsveil(listen=listen, upstream=[self.ub], config=cfg, workers=1,
                       extra_yaml=extra, name=name)
        self._dnsveils.append(dv)
        dv.start()
        dv.pp = ports
        dv.qfile = qfile
        return dv

    def qlog(self, dv, n):
        def recs():
            if not os.path.exists(dv.qfile):
                return None
            with open(dv.qfile) as f:
                r = [json.loads(x) for x in f if x.strip()]
            r = [x for x in r if x["name"].startswith("h")]
            return r if len(r) >= n else None
        return h.wait_for(recs, h.scaled(10), what="%d query-log lines in %s" % (n, dv.qfile))

    def metric(self, dv, name):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % dv.pp["admin"], timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("dnsveil_%s " % name):
                    return int(float(line.split()[1]))
        raise AssertionError("no %s in /metrics" % name)

    def tls_ctx(self):
        ctx = ssl.create_default_context(cafile=h.CA)
        return ctx

    def test_real_client_behind_haproxy(self):
        """Through haproxy, every transport sees 127.0.0.2: the query log
        and the CIDR group; TCP round-robins over two dnsveil processes."""
        dv1 = self.start_dv("pp1")
        dv2 = self.start_dv("pp2")
        f_tcp, f_tls, f_https = h.free_port(), h.free_port(), h.free_port()
        self.haproxy = Haproxy([(f_tcp, [dv1.pp["tcp"], dv2.pp["tcp"]]),
                                (f_tls, [dv1.pp["tls"]]), (f_https, [dv1.pp["https"]])])
        # direct, from 127.0.0.1: the default group, the blocked name NXDOMAIN
        r = h.kdig(dv1.port, "h9.example.test", "A", tcp=True)
        self.assertEqual(r.status, "NXDOMAIN", r)
        # kdig over TCP, twice (one per dnsveil), the blocked name: lab REFUSED
        for name in ("h1.example.test", "h2.example.test"):
            r = h.kdig(f_tcp, name, "A", "-b", CLIENT, tcp=True)
            self.assertEqual(r.status, "NOERROR", r)
        r = h.kdig(f_tcp, "h9.example.test", "A", "-b", CLIENT, tcp=True)
        self.assertEqual(r.status, "REFUSED", r)
        # kdig over TLS (verifying dns.test), dnspython over TCP and TLS
        t = h.kdig_tls(f_tls, [("h3.example.test", "A")], "-b", CLIENT)
        self.assertEqual(t.status, "NOERROR", t)
        q = dns.message.make_query("h4.example.test", "A")
        a = dns.query.tls(q, "127.0.0.1", port=f_tls, source=CLIENT, timeout=h.scaled(5),
                          ssl_context=self.tls_ctx(), server_hostname="dns.test")
        self.assertEqual(a.rcode(), dns.rcode.NOERROR)
        q = dns.message.make_query("h9.example.test", "A")
        a = dns.query.tcp(q, "127.0.0.1", port=f_tcp, source=CLIENT, timeout=h.scaled(5))
        self.assertEqual(a.rcode(), dns.rcode.REFUSED)
        # curl over DoH (HTTP/2)
        wire = dns.message.make_query("h5.example.test", "A").to_wire()
        c = curl("--http2", "--interface", CLIENT, "--resolve", "dns.test:%d:127.0.0.1" % f_https,
                 "https://dns.test:%d/dns-query?dns=%s" % (f_https, b64url(wire)))
        self.assertEqual(c.status, 200, c)
        self.assertEqual(dns.message.from_wire(c.body).rcode(), dns.rcode.NOERROR)

        recs = self.qlog(dv1, 1) + self.qlog(dv2, 1)
        direct = [r for r in recs if r["client"] == "127.0.0.1"]
        behind = [r for r in recs if r["client"] != "127.0.0.1"]
        self.assertEqual([(r["transport"], r["group"], r["rcode"]) for r in direct],
                         [("tcp", "default", "NXDOMAIN")])
        h.wait_for(lambda: len(self.qlog(dv1, 1) + self.qlog(dv2, 1)) >= 8, h.scaled(10),
                   what="8 query-log lines")
        recs = self.qlog(dv1, 1) + self.qlog(dv2, 1)
        behind = [r for r in recs if r["client"] != "127.0.0.1"]
        for r in behind:
            self.assertEqual((r["client"], r["group"]), (CLIENT, "lab"), r)
        self.assertEqual(sorted(r["transport"] for r in behind),
                         ["https", "tcp", "tcp", "tcp", "tcp", "tls", "tls"], recs)
        # round robin: both processes answered the real client over TCP
        for dv in (dv1, dv2):
            self.assertTrue(any(r["client"] == CLIENT and r["transport"] == "tcp"
                                for r in self.qlog(dv, 1)), dv.name)

    # a completed DoT handshake through haproxy, as each replica logs it
    HANDSHAKE = r"tls: worker \d+: connection from %s:\d+: sni dns\.test, alpn dot(, resumed)?"

    def handshakes(self, dvs, client):
        """[(replica index, resumed)] of every DoT handshake line with
        `client` as the peer, in each replica's log."""
        out = []
        for i, dv in enumerate(dvs):
            for m in dv.log_lines(self.HANDSHAKE % re.escape(client)):
                out.append((i, m.group(1) is not None))
        return out

    def next_handshake(self, dvs, client, seen):
        """Wait for one more handshake line than `seen`; the new one."""
        def more():
            hs = self.handshakes(dvs, client)
            return hs if len(hs) > len(seen) else None
        hs = h.wait_for(more, h.scaled(5), what="a handshake line from %s" % client)
        self.assertEqual(len(hs), len(seen) + 1, hs)
        return [x for x in hs if x not in seen or hs.count(x) > seen.count(x)][0], hs

    def replicas(self, shared):
        """Two replicas (a ticket-key file shared, or random keys each)
        behind one haproxy DoT frontend that round-robins over them."""
        tls = None
        if shared:
            key = os.path.join(self.tmp, "ticket.key")
            with open(key, "wb") as f:
                f.write(os.urandom(80))
            tls = {"ticket-key-file": key}
        tag = "shared" if shared else "own"
        dvs = [self.start_dv("rr-%s-%d" % (tag, i), tls=tls, debug=True) for i in (1, 2)]
        front, relay = h.free_port(), h.free_port()
        if self.haproxy:
            self.haproxy.stop()
        self.haproxy = Haproxy([(front, [dv.pp["tls"] for dv in dvs]),
                                (relay, [front], CLIENT)])
        return dvs, front, relay

    def s_client_pair(self, dvs, relay):
        """openssl s_client through haproxy (from 127.0.0.2, by the relay):
        a ticket, then a second connection offering it.  (replica, resumed)
        of each, and whether s_client says Reused."""
        sess = os.path.join(self.tmp, "sess-%d.pem" % relay)
        args = ["-tls1_3", "-CAfile", h.CA, "-verify_return_error", "-alpn", "dot"]
        seen = self.handshakes(dvs, CLIENT)
        rc, out = h.s_client(relay, *args, "-sess_out", sess, hold=1.0)
        self.assertIn("Verify return code: 0 (ok)", out)
        self.assertTrue(os.path.exists(sess), out)
        first, seen = self.next_handshake(dvs, CLIENT, seen)
        rc, out = h.s_client(relay, *args, "-sess_in", sess)
        second, _ = self.next_handshake(dvs, CLIENT, seen)
        return first, second, "Reused, TLSv1.3" in out

    def kdig_pair(self, dvs, front):
        """kdig from 127.0.0.2 through haproxy, two queries (a connection
        each): the (replica, resumed) of each."""
        seen = self.handshakes(dvs, CLIENT)
        r = h.kdig_tls(front, [("h1.example.test", "A"), ("h2.example.test", "A")],
                       "-b", CLIENT)
        self.assertEqual(len(r.messages), 2, r)
        def both():
            hs = self.handshakes(dvs, CLIENT)
            return hs if len(hs) >= len(seen) + 2 else None
        new = h.wait_for(both, h.scaled(5), what="kdig's two handshakes")
        for x in seen:
            new.remove(x)
        self.assertEqual(len(new), 2, new)
        return new

    def test_resumption_across_replicas(self):
        """haproxy (TCP mode, send-proxy-v2, round-robin) over two dnsveil
        processes sharing tls.ticket-key-file: openssl s_client's ticket
        from one replica resumes on the other, and so does kdig's from
        127.0.0.2 (the real client, through PROXY v2, in each replica's
        handshake line).  The control without the shared file: the second
        connection lands on the other replica and does not resume."""
        dvs, front, relay = self.replicas(shared=True)
        first, second, reused = self.s_client_pair(dvs, relay)
        log("shared key: s_client first %r, second %r, reused %s" % (first, second, reused))
        self.assertFalse(first[1])
        self.assertNotEqual(first[0], second[0], "round-robin: the other replica")
        self.assertTrue(second[1], "resumed on the other replica")
        self.assertTrue(reused)
        k = self.kdig_pair(dvs, front)
        log("shared key: kdig from %s: %r" % (CLIENT, k))
        self.assertEqual(sorted(i for i, _ in k), [0, 1], k)
        recs = self.qlog(dvs[0], 1) + self.qlog(dvs[1], 1)
        self.assertEqual(sorted((r["client"], r["transport"]) for r in recs),
                         [(CLIENT, "tls"), (CLIENT, "tls")], recs)

        for dv in dvs:
            dv.stop()
        dvs, front, relay = self.replicas(shared=False)
        first, second, reused = self.s_client_pair(dvs, relay)
        log("own keys: s_client first %r, second %r, reused %s" % (first, second, reused))
        self.assertNotEqual(first[0], second[0], "round-robin: the other replica")
        self.assertEqual((first[1], second[1], reused), (False, False, False))
        k = self.kdig_pair(dvs, front)
        log("own keys: kdig from %s: %r" % (CLIENT, k))
        self.assertEqual(sorted(i for i, _ in k), [0, 1], k)

    def closed_fast(self, sock, limit=2.0):
        waited, how, _ = h.wait_closed(sock, h.scaled(limit))
        sock.close()
        self.assertNotEqual(how, "timeout", "still open after %.1f s" % waited)
        return waited

    def test_refused_and_bad_headers(self):
        """Headers from elsewhere, no header, v1 text, truncated, late:
        closed and counted; a header on a plain listener is refused."""
        dv = self.start_dv("ppbad", admin=True, limits={"tls-handshake-timeout-ms": 1000},
                           plain=("tls", "http"))
        port = dv.pp["tcp"]
        q = h.make_query("h1.example.test", "A").to_wire()
        framed = struct.pack("!H", len(q)) + q

        # a valid header and query from a host not in proxy-protocol.from
        ref0 = self.metric(dv, "proxy_refused_total")
        s = h.tcp_connect(port, source=OTHER)
        try:
            s.sendall(proxy_v2("192.0.2.1", 4000) + framed)
        except OSError:
            pass
        self.closed_fast(s)
        h.wait_for(lambda: self.metric(dv, "proxy_refused_total") == ref0 + 1, h.scaled(5),
                   what="proxy_refused_total + 1")

        # from the proxy's address but without a header, or with bad ones
        err0 = self.metric(dv, "proxy_header_errors_total")
        bad = [framed,                                          # a DNS query
               b"\x16\x03\x01\x00\x05hello",                    # a TLS record
               b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 853\r\n",  # v1 text
               SIG + b"\x21\x11\xff\xff",                       # far too long
               SIG + b"\x21\x22\x00\x0c" + bytes(12)]          # IPv6 in 12 bytes
        for data in bad:
            s = h.tcp_connect(port)
            s.sendall(data)
            self.closed_fast(s)
        # truncated: the proxy closes inside the header
        s = h.tcp_connect(port)
        s.sendall(proxy_v2("192.0.2.1", 4000)[:20])
        s.shutdown(socket.SHUT_WR)
        self.closed_fast(s)
        # late: half a header, then nothing: cut at the handshake timeout
        s = h.tcp_connect(dv.pp["tls"])
        s.sendall(SIG[:6])
        waited = self.closed_fast(s, limit=5.0)
        self.assertGreater(waited, 0.5)
        n = len(bad) + 2
        h.wait_for(lambda: self.metric(dv, "proxy_header_errors_total") == err0 + n, h.scaled(5),
                   what="proxy_header_errors_total + %d" % n)

        # a good header by hand, a query behind it: the documentation
        # address it names is the client
        s = h.tcp_connect(port)
        s.sendall(proxy_v2("192.0.2.55", 4000) + framed)
        self.assertEqual(dns.message.from_wire(h.recv_msg(s)).rcode(), dns.rcode.NOERROR)
        s.close()
        rec = self.qlog(dv, 1)[-1]
        self.assertEqual((rec["client"], rec["port"], rec["group"]), ("192.0.2.55", 4000, "default"))
        # LOCAL (a health check): the socket's own address
        s = h.tcp_connect(port)
        s.sendall(SIG + b"\x20\x00\x00\x00" + struct.pack("!H", len(q)) + q)
        self.assertEqual(dns.message.from_wire(h.recv_msg(s)).rcode(), dns.rcode.NOERROR)
        s.close()
        self.assertEqual(self.qlog(dv, 2)[-1]["client"], "127.0.0.1")
        # DoH over plain HTTP/1.1 behind a header by hand
        s = h.tcp_connect(dv.pp["http"])
        s.sendall(proxy_v2("198.51.100.9", 5000) +
                  b"GET /dns-query?dns=%s HTTP/1.1\r\nHost: dns.test\r\nConnection: close\r\n\r\n"
                  % b64url(h.make_query("h6.example.test", "A").to_wire()).encode())
        _, how, data = h.wait_closed(s, h.scaled(5))
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
        rec = self.qlog(dv, 3)[-1]
        self.assertEqual((rec["client"], rec["transport"], rec["name"]),
                         ("198.51.100.9", "http", "h6.example.test."))

        # a PROXY header on the plain listener: refused, not held until
        # limits.tcp-read-timeout-ms
        s = h.tcp_connect(dv.port)
        s.sendall(proxy_v2("192.0.2.1", 4000) + framed)
        self.closed_fast(s)
        # and on plain TLS and HTTP listeners: a failed handshake, a 400
        for port in (dv.tls_port, dv.http_port):
            s = h.tcp_connect(port)
            s.sendall(proxy_v2("192.0.2.1", 4000) + framed)
            self.closed_fast(s)
        self.assertTrue(dv.alive())


if __name__ == "__main__":
    h.main()
