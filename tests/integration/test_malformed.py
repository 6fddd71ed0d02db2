#!/usr/bin/python3
"""Hostile and broken input over UDP and TCP: short packets are dropped and
counted, broken questions get FORMERR, QDCOUNT != 1 gets FORMERR, other
opcodes NOTIMP, responses (QR=1) are dropped, compression loops are caught,
random garbage is survived; TCP framing abuse (truncated length prefix,
idle connections, a client that never reads) costs bounded memory and
never stalls other clients."""

import os
import random
import select
import socket
import struct
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.opcode  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rrset  # noqa: E402

FORMERR, NOTIMP = 1, 4
RD = 0x0100
QR = 0x8000


def hdr(qid, flags=RD, qd=1, an=0, ns=0, ar=0):
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


def question(name="www.example.test", qtype=1, qclass=1):
    return dns.name.from_text(name).to_wire() + struct.pack("!HH", qtype, qclass)


def opt_rr(payload=1232, version=0, rdata=b""):
    return b"\x00" + struct.pack("!HHBBHH", 41, payload, 0, version, 0, len(rdata)) + rdata


def bad_queries():
    """(description, wire, expected rcode).  The ID is bytes 0-1."""
    long_name = b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00"
    return [
        ("label runs past the end", hdr(0x0101) + b"\x3fabc", FORMERR),
        ("question without type and class", hdr(0x0102) + b"\x03www\x00", FORMERR),
        ("question cut inside type", hdr(0x0103) + b"\x03www\x00\x00", FORMERR),
        ("reserved label type 0x40", hdr(0x0104) + b"\x41" + b"a" * 65 + b"\x00\x00\x01\x00\x01",
         FORMERR),
        ("name longer than 255", hdr(0x0105) + long_name + b"\x00\x01\x00\x01", FORMERR),
        ("QDCOUNT=2", hdr(0x0106, qd=2) + question() + question("mail.example.test"), FORMERR),
        ("QDCOUNT=0", hdr(0x0107, qd=0), FORMERR),
        ("QDCOUNT=0 with EDNS", hdr(0x0108, qd=0, ar=1) + opt_rr(), FORMERR),
        ("compression pointer to itself", hdr(0x0109) + b"\xc0\x0c\x00\x01\x00\x01", FORMERR),
        ("compression loop a -> a", hdr(0x010a) + b"\x01a\xc0\x0c\x00\x01\x00\x01", FORMERR),
        ("pointer past the end", hdr(0x010b) + b"\xc0\xff\x00\x01\x00\x01", FORMERR),
        ("QDCOUNT=1 but ARCOUNT=1 and nothing", hdr(0x010c, ar=1) + question(), FORMERR),
        ("OPT cut short", hdr(0x010d, ar=1) + question() + opt_rr()[:7], FORMERR),
        ("two OPT records", hdr(0x010e, ar=2) + question() + opt_rr() + opt_rr(), FORMERR),
        ("NOTIFY (opcode 4)", hdr(0x0201, flags=(4 << 11)) + question("example.test", 6), NOTIMP),
        ("STATUS (opcode 2)", hdr(0x0202, flags=(2 << 11) | RD) + question(), NOTIMP),
        ("UPDATE (opcode 5)", hdr(0x0203, flags=(5 << 11)) + question("example.test", 6), NOTIMP),
        ("opcode 15", hdr(0x0204, flags=(15 << 11) | RD) + question(), NOTIMP),
    ]


class Malformed(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound()
        self.dv = self.start_dnsveil(upstream=[self.ub], config=h.base_config(
            limits={"tcp-idle-timeout-ms": 1000, "tcp-max-inflight": 128}))

    def tcp_exchange(self, payload, timeout=None, framed=True):
        """One connection: send `payload` (framed unless told), return the
        first answer's bytes, or None if the connection closed / timed out."""
        s = socket.create_connection(("127.0.0.1", self.dv.port), timeout=h.scaled(3))
        try:
            s.settimeout(timeout or h.scaled(2))
            s.sendall(struct.pack("!H", len(payload)) + payload if framed else payload)
            try:
                return h.recv_msg(s)
            except (socket.timeout, ConnectionError, OSError):
                return None
        finally:
            s.close()

    def check_answer(self, desc, sent, resp, want, proto):
        self.assertIsNotNone(resp, "%s over %s: no answer, expected %s" % (
            desc, proto, dns.rcode.to_text(want)))
        qid, flags, qd, an, ns, ar = h.parse_header(resp)
        self.assertEqual(qid, struct.unpack("!H", sent[:2])[0], "%s over %s: id" % (desc, proto))
        self.assertTrue(flags & QR, "%s over %s: answer without QR" % (desc, proto))
        self.assertEqual(flags & 0xF, want, "%s over %s: rcode %s, expected %s" % (
            desc, proto, dns.rcode.to_text(flags & 0xF), dns.rcode.to_text(want)))
        self.assertEqual((flags >> 11) & 0xF, (struct.unpack("!H", sent[2:4])[0] >> 11) & 0xF,
                         "%s over %s: opcode not copied" % (desc, proto))

    def test_formerr_and_notimp(self):
        st0 = self.dv.stats()
        cases = bad_queries()
        for desc, wire, want in cases:
            resp = h.udp_raw(self.dv.port, wire, timeout=h.scaled(2))
            self.check_answer(desc, wire, resp, want, "UDP")
            resp = self.tcp_exchange(wire)
            self.check_answer(desc, wire, resp, want, "TCP")
            log("ok: %s -> %s over UDP and TCP" % (desc, dns.rcode.to_text(want)))
        st1 = self.dv.stats()
        n_formerr = 2 * sum(1 for c in cases if c[2] == FORMERR)
        n_notimp = 2 * sum(1 for c in cases if c[2] == NOTIMP)
        self.assertGreaterEqual(st1["formerr"] - st0["formerr"], n_formerr, st1)
        self.assertGreaterEqual(st1["notimp"] - st0["notimp"], n_notimp, st1)
        log("ok: stats formerr +%d, notimp +%d" % (st1["formerr"] - st0["formerr"],
                                                   st1["notimp"] - st0["notimp"]))
        # dnspython-built NOTIFY, as a real secondary would send it
        q = dns.message.make_query("example.test", "SOA")
        q.set_opcode(dns.opcode.NOTIFY)
        q.flags &= ~dns.flags.RD
        r = dns.query.udp(q, "127.0.0.1", port=self.dv.port, timeout=h.scaled(2))
        self.assertEqual((r.opcode(), r.rcode()), (dns.opcode.NOTIFY, dns.rcode.NOTIMP), str(r))
        # an EDNS version dnsveil does not speak: BADVERS (RFC 6891 6.1.3)
        q = h.make_query("www.example.test", "A", edns=1)
        r = dns.query.udp(q, "127.0.0.1", port=self.dv.port, timeout=h.scaled(2))
        self.assertEqual(r.rcode(), dns.rcode.BADVERS, "EDNS version 1: %s" % r)
        log("ok: dnspython NOTIFY -> NOTIMP; EDNS version 1 -> BADVERS")
        self.assert_healthy(self.dv, "FORMERR/NOTIMP cases")

    def test_short_packets_dropped(self):
        st0 = self.dv.stats()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        for n in range(1, 12):
            s.sendto(os.urandom(n), ("127.0.0.1", self.dv.port))
        s.sendto(b"", ("127.0.0.1", self.dv.port))
        r, _, _ = select.select([s], [], [], 1.0)
        self.assertEqual(r, [], "an answer to a packet shorter than 12 bytes: %r" % (
            s.recv(65535) if r else None))
        s.close()
        log("ok: no answer to UDP packets of 0..11 bytes")
        # TCP: a short message: no answer (the connection may be closed)
        for n in (0, 1, 11):
            msg = (b"\x12\x34" + b"\x00" * (n - 2)) if n >= 2 else b"\x12"[:n]
            resp = self.tcp_exchange(msg, timeout=1.0)
            self.assertIsNone(resp, "an answer to a %d-byte TCP message: %r" % (n, resp))
        log("ok: no answer to TCP messages of 0, 1, 11 bytes")
        st1 = wait_stats(self.dv, lambda st: st["dropped_short"] - st0["dropped_short"] >= 11)
        log("ok: dropped_short +%d" % (st1["dropped_short"] - st0["dropped_short"]))
        self.assert_healthy(self.dv, "short packets")

    def test_responses_dropped(self):
        st0 = self.dv.stats()
        q = h.make_query("www.example.test", "A")
        resp = dns.message.make_response(q)
        resp.answer.append(dns.rrset.from_text("www.example.test.", 300, "IN", "A", "192.0.2.66"))
        wire = resp.to_wire()
        self.assertIsNone(h.udp_raw(self.dv.port, wire, timeout=1.0),
                          "dnsveil answered a UDP message with QR=1")
        # QR=1 with garbage after the header
        self.assertIsNone(h.udp_raw(self.dv.port, hdr(0x7777, flags=QR) + os.urandom(20),
                                    timeout=0.5), "answered QR=1 garbage")
        log("ok: UDP responses (QR=1) get no answer")
        # TCP: a response, then a real query on the same connection: only
        # the query is answered
        s = socket.create_connection(("127.0.0.1", self.dv.port), timeout=h.scaled(3))
        q2 = h.make_query("mail.example.test", "A", qid=0x5151)
        h.send_msg(s, wire)
        h.send_msg(s, q2.to_wire())
        try:
            got = dns.message.from_wire(h.recv_msg(s))
            self.assertEqual(got.id, 0x5151, "TCP: answer to the QR=1 message: %s" % got)
            self.assertEqual([x[3] for x in h.rrset_texts(got)], ["192.0.2.25"])
            log("ok: TCP response dropped, following query answered on the same connection")
        except (ConnectionError, OSError) as e:
            log("note: dnsveil closed the TCP connection after a QR=1 message (%r)" % e)
        finally:
            s.close()
        st1 = wait_stats(self.dv, lambda st: st["dropped_response"] - st0["dropped_response"] >= 2)
        log("ok: dropped_response +%d" % (st1["dropped_response"] - st0["dropped_response"]))
        # the cache was not poisoned by the unsolicited "response"
        m = h.udp_query(self.dv.port, "www.example.test")
        self.assertEqual([x[3] for x in h.rrset_texts(m)], ["192.0.2.1"], str(m))

    def test_random_garbage(self):
        rng = random.Random(0x5eed)
        n = int(400 / h.SCALE)
        packets = []
        for i in range(n):
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(10, 600)))
            if i % 2:
                # plausible header: a query, opcode 0, QDCOUNT 1, random rest
                body = hdr(i, flags=RD, qd=1, an=rng.randint(0, 2), ns=0,
                           ar=rng.randint(0, 2)) + body
            else:
                body = struct.pack("!H", i) + body
            packets.append(body)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for i, p in enumerate(packets):
            s.sendto(p, ("127.0.0.1", self.dv.port))
            if i % 50 == 49:
                time.sleep(0.02)
        answers = {}
        deadline = time.monotonic() + h.scaled(5)
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < h.scaled(1.0):
            r, _, _ = select.select([s], [], [], 0.1)
            if r:
                data = s.recv(65535)
                qid = h.parse_header(data)[0]
                answers[qid] = data
                quiet_since = time.monotonic()
        s.close()
        for qid, data in answers.items():
            self.assertLess(qid, n, "answer with an id never sent: %d" % qid)
            sent = packets[qid]
            self.assertFalse(h.parse_header(sent)[1] & QR if len(sent) >= 12 else False,
                             "answered a QR=1 packet (id %d)" % qid)
            self.assertTrue(h.parse_header(data)[1] & QR, "answer without QR (id %d)" % qid)
        plausible = sum(1 for q in answers if q % 2)
        log("ok: %d UDP garbage packets, %d answers (%d to plausible headers), all sane" % (
            n, len(answers), plausible))
        # TCP: garbage messages, each on its own connection, and raw garbage
        conns = []
        for i in range(40):
            body = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))
            c = socket.create_connection(("127.0.0.1", self.dv.port), timeout=h.scaled(3))
            c.sendall(struct.pack("!H", len(body)) + body if i % 2 else body)
            conns.append(c)
        time.sleep(0.5)
        for i, c in enumerate(conns):
            if i % 3 == 0:  # some reset, some closed
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        log("ok: TCP garbage sent (framed and unframed)")
        self.assert_healthy(self.dv, "random garbage")

    def test_tcp_truncated_and_idle(self):
        st0 = self.dv.stats()
        # a length prefix announcing 100 bytes, 10 bytes, then close
        s = socket.create_connection(("127.0.0.1", self.dv.port), timeout=h.scaled(3))
        s.sendall(b"\x00\x64" + os.urandom(10))
        s.close()
        # only half a length prefix, then close
        s = socket.create_connection(("127.0.0.1", self.dv.port), timeout=h.scaled(3))
        s.sendall(b"\x00")
        s.close()
        # a reset instead of a close, mid-message
        s = socket.create_connection(("127.0.0.1", self.dv.port), timeout=h.scaled(3))
        s.sendall(b"\x00\x64" + os.urandom(10))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        log("ok: sent truncated TCP messages and closed / reset")
        self.assert_healthy(self.dv, "truncated TCP messages")
        # idle connections (silent, and stuck mid-message) are closed after
        # tcp-idle-timeout-ms = 1000
        conns = []
        for payload in (b"", b"\x00\x64" + b"\x00" * 10):
            c = socket.create_connection(("127.0.0.1", self.dv.port), timeout=h.scaled(3))
            if payload:
                c.sendall(payload)
            conns.append(c)
        t0 = time.monotonic()
        for c in conns:
            c.settimeout(h.scaled(6))
            try:
                data = c.recv(100)
            except ConnectionResetError:
                data = b""
            except socket.timeout:
                self.fail("an idle TCP connection was not closed within %.0fs "
                          "(tcp-idle-timeout-ms 1000)" % h.scaled(6))
            self.assertEqual(data, b"", "data on an idle connection: %r" % data)
            c.close()
        dt = time.monotonic() - t0
        self.assertGreater(dt, 0.5, "idle connection closed too early (%.2fs)" % dt)
        log("ok: idle TCP connections closed after %.2fs" % dt)
        st1 = wait_stats(self.dv, lambda st: st["tcp_idle_closed"] - st0["tcp_idle_closed"] >= 1)
        log("ok: tcp_idle_closed +%d, tcp_connections +%d" % (
            st1["tcp_idle_closed"] - st0["tcp_idle_closed"],
            st1["tcp_connections"] - st0["tcp_connections"]))
        # an active connection is not closed while it keeps sending
        c = socket.create_connection(("127.0.0.1", self.dv.port), timeout=h.scaled(3))
        for i in range(4):
            h.send_msg(c, h.make_query("www.example.test", qid=i).to_wire())
            self.assertEqual(dns.message.from_wire(h.recv_msg(c)).id, i)
            time.sleep(0.4)
        c.close()
        log("ok: a busy connection outlived the idle timeout")

    def test_client_that_never_reads(self):
        """One client pipelines queries and never reads its answers: dnsveil
        must stop reading from it (tcp-max-inflight / output limits), keep
        its memory bounded and keep answering everybody else."""
        d = self.dv
        h.udp_query(d.port, "www.example.test")  # cached
        rss0 = d.rss_kb()
        bad = socket.create_connection(("127.0.0.1", d.port), timeout=h.scaled(3))
        bad.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        bad.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        bad.setblocking(False)
        wire = h.make_query("www.example.test", "A").to_wire()
        frame = struct.pack("!H", len(wire)) + wire
        chunk = frame * 256
        sent = 0
        stop = threading.Event()
        others = {"ok": 0, "slow": 0, "worst": 0.0, "fail": []}

        def other_client():
            i = 0
            while not stop.is_set():
                i += 1
                t0 = time.monotonic()
                try:
                    if i % 2:
                        m = h.udp_query(d.port, "h%d.example.test" % (i % 1000),
                                        timeout=h.scaled(2))
                    else:
                        m = h.tcp_query(d.port, "h%d.example.test" % (i % 1000),
                                        timeout=h.scaled(2))
                    dt = time.monotonic() - t0
                    others["worst"] = max(others["worst"], dt)
                    if m.rcode() == 0 and m.answer:
                        others["ok"] += 1
                    else:
                        others["fail"].append(str(m.rcode()))
                except Exception as e:  # noqa: BLE001
                    others["fail"].append(repr(e))
                time.sleep(0.01)
        t = threading.Thread(target=other_client, daemon=True)
        t.start()
        deadline = time.monotonic() + h.scaled(6)
        stalled_since = None
        max_rss = rss0
        ended = "still sending at the deadline"
        t_start = time.monotonic()
        while time.monotonic() < deadline:
            try:
                # keep the framing intact across partial sends
                n = bad.send(chunk[sent % len(chunk):])
                sent += n
                stalled_since = None
            except BlockingIOError:
                if stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > 2.0:
                    ended = "dnsveil stopped reading after %.1fs" % (
                        stalled_since - t_start)
                    break  # dnsveil stopped reading from us: as it should
                time.sleep(0.01)
            except (ConnectionError, OSError) as e:
                ended = "dnsveil closed the connection after %.1fs (%r)" % (
                    time.monotonic() - t_start, e)
                break  # dnsveil closed us: also acceptable
            max_rss = max(max_rss, d.rss_kb())
        max_rss = max(max_rss, d.rss_kb())
        time.sleep(0.5)
        stop.set()
        t.join(h.scaled(5))
        bad.close()
        grew = (max_rss - rss0) / 1024.0
        log("never-reading client: %s" % ended)
        log("never-reading client sent %d queries (%.1f MB); dnsveil RSS %d kB -> max %d kB "
            "(+%.1f MB); other client: %d ok, worst %.3fs, %d failures" % (
                sent // len(frame), sent / 1e6, rss0, max_rss, grew, others["ok"],
                others["worst"], len(others["fail"])))
        self.assertLess(grew, 50, "RSS grew by %.1f MB for one client that never reads" % grew)
        self.assertEqual(others["fail"], [], "other clients failed meanwhile")
        self.assertGreater(others["ok"], 10, "other clients got too few answers meanwhile")
        self.assertLess(others["worst"], h.scaled(1.0),
                        "another client waited %.3fs for an answer" % others["worst"])
        self.assert_healthy(d, "a client that never reads")


def wait_stats(d, predicate, timeout=None):
    """Poll dnsveil's stats until predicate(stats) holds (counters may be
    summed from workers a little later than the answer is sent)."""
    last = {}

    def check():
        last["st"] = d.stats()
        return predicate(last["st"])
    try:
        h.wait_for(check, timeout or h.scaled(3), interval=0.2, what="stats condition")
    except AssertionError:
        raise AssertionError("stats condition never held; last stats: %s" % last.get("st"))
    return last["st"]


if __name__ == "__main__":
    h.main()
