#!/usr/bin/python3
"""DNS over HTTPS against hostile HTTP clients, through the real binary.

HTTP/2 (frames built with python3-hyperframe, the client preface and
SETTINGS from python3-h2, HPACK by hand where the attack needs exact bytes;
the server's frames are parsed raw, so its GOAWAY and RST_STREAM codes are
seen even after python3-h2 would have given up on the connection):

  - an HPACK bomb: one ~4 KB header inserted in the dynamic table, then
    header blocks referencing it ~12,000 times, ~1 MB/s on each of 4
    connections to a dnsveil with ONE worker, while a control client
    measures its UDP and DoH latency on that worker.  The attackers must
    be cut off (GOAWAY or EOF) within a bounded time and the control p99
    must stay within max(2 x quiet, quiet + 20 ms) (x SCALE).
  - small header blocks that each decode to far more than they weigh: the
    per-connection budget ends them with GOAWAY(ENHANCE_YOUR_CALM).
  - connection errors must be a GOAWAY with the right code, written before
    the close: a CONTINUATION flood, a PING flood, a SETTINGS flood
    (ENHANCE_YOUR_CALM) and a plain protocol error, DATA on stream 0
    (PROTOCOL_ERROR).

HTTP/1.1 (raw sockets, RFC 9112): whitespace between a field name and its
colon (5.1), obsolete line folding (5.2) and a bare LF ending a line of the
header section (2.2) are each answered 400 and end the connection, over
TLS and in the clear; the same requests written properly are answered.
"""

import multiprocessing
import os
import select
import socket
import ssl
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import hpack  # noqa: E402
from hyperframe.frame import (ContinuationFrame, HeadersFrame, PingFrame,  # noqa: E402
                              SettingsFrame)

h.ensure_dev_certs()

NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x2, 0xb
CONTROL_NAME = "www.example.test"


# ---------------------------------------------------------------- HPACK by hand

def hpack_int(value, prefix_bits, first=0):
    """RFC 7541 5.1: `value` with an N-bit prefix, `first` holding the
    representation's flag bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s):
    b = s if isinstance(s, bytes) else s.encode()
    return hpack_int(len(b), 7) + b


def lit_noindex(static_name_index, value):
    """Literal without indexing, name from the static table (6.2.2)."""
    return hpack_int(static_name_index, 4) + hpack_str(value)


def lit_index_new(name, value):
    """Literal with incremental indexing, new name (6.2.1)."""
    return b"\x40" + hpack_str(name) + hpack_str(value)


def indexed(i):
    return hpack_int(i, 7, 0x80)


# static table: 2 ":method GET", 6 ":scheme http", 1 ":authority", 4 ":path"
def request_prefix(path, authority="dns.test"):
    return indexed(2) + indexed(6) + lit_noindex(4, path) + lit_noindex(1, authority)


def frame(f):
    return f.serialize()


def headers_frame(sid, block, end_stream=True, end_headers=True):
    f = HeadersFrame(sid)
    f.data = block
    if end_stream:
        f.flags.add("END_STREAM")
    if end_headers:
        f.flags.add("END_HEADERS")
    return frame(f)


def client_preface():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    return c.data_to_send()


def query_path():
    return "/dns-query?dns=" + h.b64url(h.query_wire(CONTROL_NAME))


# ---------------------------------------------------------------- raw HTTP/2 peer

class RawH2:
    """A client socket (h2c or TLS with ALPN h2) that writes whatever bytes it
    is given and parses what the server sends frame by frame: GOAWAY (code,
    last stream), RST_STREAM codes, response :status per stream (decoded
    with its own HPACK decoder), and how the connection ended."""

    def __init__(self, port, tls=False, timeout=5.0):
        self.sock = h.tcp_connect(port, timeout=timeout)
        if tls:
            self.sock = h.client_context(alpn=("h2",)).wrap_socket(self.sock,
                                                            server_hostname=h.AUTH_NAME)
        self.sock.setblocking(False)
        self.rx = b""
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 65536
        self.goaway = None           # (error code, last stream id)
        self.t_goaway = None
        self.resets = {}             # stream id -> error code
        self.status = {}             # stream id -> :status
        self.frames = 0
        self.closed = None           # 'eof' / 'reset' / 'tls error'
        self.t_closed = None
        self.sent = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data, deadline, read=True):
        """Write all of `data` unless the connection ends or `deadline`
        passes, reading meanwhile (unless read=False: a flooder that does
        not read) so that the server is never blocked on us.  Returns True
        if everything went out."""
        view = memoryview(data)
        while view:
            if self.closed or time.monotonic() >= deadline:
                return False
            r, w, _ = select.select([self.sock] if read else [], [self.sock], [],
                                    max(0.0, min(0.05, deadline - time.monotonic())))
            if r:
                self.read_some()
            if w and not self.closed:
                try:
                    n = self.sock.send(view[:65536])
                except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    continue
                except (ConnectionError, ssl.SSLError, OSError):
                    self._ended("reset")
                    return False
                self.sent += n
                view = view[n:]
        return True

    def _ended(self, how):
        if not self.closed:
            self.closed, self.t_closed = how, time.monotonic()

    def read_some(self):
        """Read what is there now (non-blocking) and parse it."""
        for _ in range(64):
            try:
                d = self.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except ssl.SSLError:
                self._ended("tls error")
                return
            except (ConnectionError, OSError):
                self._ended("reset")
                return
            if not d:
                self._ended("eof")
                return
            self._parse(d)

    def pump(self, until, timeout):
        """Read until until() or the end of the connection or `timeout`."""
        deadline = time.monotonic() + timeout
        while not until() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
                select.select([self.sock], [], [], min(left, 0.1))
            self.read_some()
        return until()

    def _parse(self, data):
        self.rx += data
        while len(self.rx) >= 9:
            n = int.from_bytes(self.rx[:3], "big")
            if len(self.rx) < 9 + n:
                return
            ftype, flags = self.rx[3], self.rx[4]
            sid = int.from_bytes(self.rx[5:9], "big") & 0x7FFFFFFF
            payload, self.rx = self.rx[9:9 + n], self.rx[9 + n:]
            self.frames += 1
            if ftype == 7 and len(payload) >= 8:
                self.goaway = (int.from_bytes(payload[4:8], "big"),
                               int.from_bytes(payload[:4], "big") & 0x7FFFFFFF)
                self.t_goaway = self.t_goaway or time.monotonic()
            elif ftype == 3 and len(payload) >= 4:
                self.resets[sid] = int.from_bytes(payload[:4], "big")
            elif ftype == 1:
                if flags & 0x8:
                    payload = payload[1:len(payload) - payload[0]]
                if flags & 0x20:
                    payload = payload[5:]
                for k, v in self.dec.decode(payload, raw=True):
                    if k == b":status":
                        self.status[sid] = int(v)


# ---------------------------------------------------------------- the HPACK bomb

BOMB_NAME = "x-bomb"
BOMB_VALUE_LEN = 4000     # entry size 4000 + 6 + 32 = 4038 <= 4096


def attacker(port, deadline, rate, refs, max_conns, out):
    """One attacking process: HPACK-bomb connections one after the other
    until `deadline` (or `max_conns`), each paced at `rate` bytes/s.  Puts
    one dict per connection on `out`, then None."""
    try:
        prefix = request_prefix(query_path())
        decoded_per_ref = len(BOMB_NAME) + BOMB_VALUE_LEN
        conns = 0
        while time.monotonic() < deadline and conns < max_conns:
            conns += 1
            try:
                c = RawH2(port)
            except OSError as e:
                out.put({"error": "connect: %s" % e})
                time.sleep(0.05)
                continue
            t0 = time.monotonic()
            first = prefix + lit_index_new(BOMB_NAME, "a" * BOMB_VALUE_LEN)
            # the dynamic table now holds x-bomb alone: index 62
            c.send(client_preface() + headers_frame(1, first), deadline)
            block = prefix + indexed(62) * refs
            sid, blocks, represented = 3, 0, 0
            while not c.closed and c.goaway is None and time.monotonic() < deadline:
                if not c.send(headers_frame(sid, block), deadline):
                    break
                sid += 2
                blocks += 1
                represented += refs * decoded_per_ref
                # pace: at most `rate` bytes/s since the connection began
                ahead = c.sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    c.pump(lambda: False, min(ahead, max(0.0, deadline - time.monotonic())))
                else:
                    c.read_some()
            t_end = time.monotonic()
            interrupted = not c.closed and c.goaway is None and t_end >= deadline
            # the server's last words: GOAWAY, then EOF
            c.pump(lambda: c.closed is not None, 2.0)
            ends = [t for t in (c.t_goaway, c.t_closed) if t is not None]
            out.put({"interrupted": interrupted, "sent": c.sent, "blocks": blocks,
                     "represented": represented,
                     "answered": sum(1 for s in c.status if s >= 3),
                     "resets": dict(c.resets), "goaway": c.goaway, "closed": c.closed,
                     "t_goaway_or_close": (min(ends) if ends else t_end) - t0})
            c.close()
    except Exception as e:  # noqa: BLE001
        out.put({"error": repr(e)})
    finally:
        out.put(None)


class Control:
    """Sequential UDP and DoH (h2 over TLS) queries for a cached name,
    with their latencies."""

    TIMEOUT = 2.0

    def __init__(self, dv):
        self.dv = dv
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.connect(("127.0.0.1", dv.port))
        self.doh = h.H2Client(dv.https_port, tls=True)
        self.wire = h.query_wire(CONTROL_NAME)
        self.qid = 0
        self.lost = 0

    def close(self):
        self.udp.close()
        self.doh.close()

    def udp_once(self):
        self.qid = (self.qid + 1) & 0xFFFF
        msg = h.make_query(CONTROL_NAME, qid=self.qid).to_wire()
        t0 = time.monotonic()
        self.udp.send(msg)
        deadline = t0 + self.TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return self.TIMEOUT
            self.udp.settimeout(left)
            try:
                r = self.udp.recv(4096)
            except socket.timeout:
                return self.TIMEOUT
            if r[:2] == msg[:2]:
                return time.monotonic() - t0

    def doh_once(self):
        t0 = time.monotonic()
        if self.doh.closed or self.doh.goaway:
            # lost (a starved worker cuts it off by its timeouts): that
            # query counts as a timeout, the next one reconnects
            self.lost += 1
            self.doh.close()
            self.doh = h.H2Client(self.dv.https_port, tls=True)
            return self.TIMEOUT
        sid = self.doh.request("GET", wire=self.wire)
        st = self.doh.wait([sid], self.TIMEOUT)[0]
        if not st.done or st.status != 200:
            return self.TIMEOUT
        self.doh.streams.pop(sid, None)
        return time.monotonic() - t0

    def measure(self, seconds, stop=None, interval=0.004):
        """(udp latencies, doh latencies) over `seconds` (or until stop())."""
        udp, doh = [], []
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (stop and stop()):
            udp.append(self.udp_once())
            doh.append(self.doh_once())
            time.sleep(interval)
        return udp, doh


def ms(x):
    return "%.2f ms" % (x * 1000.0)


class HpackBomb(h.IntegrationTest):
    """One worker; 4 HPACK-bomb connections; a control client on the same
    worker."""

    ATTACKERS = 4
    ATTACK_S = 5.0
    RATE = 1_000_000          # bytes/s per attacking connection
    REFS = 12000              # references per ~12 KB header block
    MAX_CONNS = 400           # per attacker: reconnections are bounded too
    CLOSE_BOUND_S = 2.0       # each attacking connection ends within this

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        # the default timeouts: a control connection must not be cut off
        # by the short ones the other DoH tests use
        lim = {"tcp-read-timeout-ms": 5000, "tcp-idle-timeout-ms": 10000}
        self.dv = h.Dnsveil(listen=["dns", "https", "http"],
                            upstream=[self.ub], config=h.doh_config(limits=lim), workers=1,
                                name="doh-bomb")
        self._dnsveils.append(self.dv)
        self.dv.start()

    def test_hpack_bomb(self):
        ctl = Control(self.dv)
        try:
            ctl.measure(0.5)                                  # warm: cached, connected
            q_udp, q_doh = ctl.measure(h.scaled(2.0))
            log("quiet: %d UDP, %d DoH queries; p99 UDP %s, DoH %s" % (
                len(q_udp), len(q_doh), ms(h.percentile(q_udp, 99)), ms(h.percentile(q_doh, 99))))

            ctx = multiprocessing.get_context("fork")
            out = ctx.Queue()
            deadline = time.monotonic() + h.scaled(self.ATTACK_S)
            procs = [ctx.Process(target=attacker,
                                 args=(self.dv.http_port, deadline, self.RATE, self.REFS,
                                       self.MAX_CONNS, out), daemon=True)
                     for _ in range(self.ATTACKERS)]
            for p in procs:
                p.start()
            try:
                time.sleep(0.2)                                # the attack is on
                a_udp, a_doh = ctl.measure(max(0.5, deadline - time.monotonic()))
                conns, done, errors = [], 0, []
                until = deadline + h.scaled(10)
                while done < len(procs) and time.monotonic() < until:
                    try:
                        r = out.get(timeout=max(0.1, until - time.monotonic()))
                    except Exception:  # noqa: BLE001 - queue.Empty
                        break
                    if r is None:
                        done += 1
                    elif "error" in r:
                        errors.append(r["error"])
                    else:
                        conns.append(r)
            finally:
                for p in procs:
                    p.join(timeout=h.scaled(5))
                    if p.is_alive():
                        p.terminate()      # our own child, by its handle
                        p.join(timeout=5)
            self.assertTrue(self.dv.alive(), "dnsveil died under the HPACK bomb")
            self.assertEqual(done, len(procs), "attackers did not finish: %r" % errors)
            self.assertEqual(errors, [], "attacker errors")
            self.assertTrue(conns, "no attacking connection was made")

            sent = sum(c["sent"] for c in conns)
            represented = sum(c["represented"] for c in conns)
            answered = sum(c["answered"] for c in conns)
            goaways = sorted(set(c["goaway"][0] for c in conns if c["goaway"]))
            bound_close = h.scaled(self.CLOSE_BOUND_S)
            # the test's own deadline may cut the last connection of each
            # attacker short: that one only fails if it had already lived
            # longer than the bound
            unclosed = [c for c in conns if c["closed"] is None and c["goaway"] is None
                        and not (c["interrupted"] and c["t_goaway_or_close"] < bound_close)]
            closes = [c["t_goaway_or_close"] for c in conns if not c["interrupted"]] or [0.0]
            p99 = {k: h.percentile(v, 99) for k, v in
                   (("q_udp", q_udp), ("q_doh", q_doh), ("a_udp", a_udp), ("a_doh", a_doh))}
            log("attack: %d connections, %.1f MB sent, %d header blocks standing for %.1f GB "
                "of header fields (%.0fx what was sent); %d answered; GOAWAY codes %s; "
                "time to GOAWAY/close: max %.3f s, median %.3f s; %d cut short by the test's "
                "deadline, %d never closed" % (
                    len(conns), sent / 1e6, sum(c["blocks"] for c in conns), represented / 1e9,
                    represented / max(1, sent), answered, goaways, max(closes),
                    h.percentile(closes, 50), sum(1 for c in conns if c["interrupted"]),
                    len(unclosed)))
            log("control under attack: %d UDP, %d DoH queries; p99 UDP %s (quiet %s), "
                "DoH %s (quiet %s); DoH connection lost %d times" % (
                    len(a_udp), len(a_doh), ms(p99["a_udp"]), ms(p99["q_udp"]),
                    ms(p99["a_doh"]), ms(p99["q_doh"]), ctl.lost))
            self.assertEqual(unclosed, [], "attacking connections still open at the end")
            self.assertLessEqual(max(closes), bound_close,
                                 "an attacking connection lasted %.2f s" % max(closes))
            for c in conns:
                if c["goaway"]:
                    self.assertEqual(c["goaway"][0], ENHANCE_YOUR_CALM, repr(c))
            for kind in ("udp", "doh"):
                quiet, att = p99["q_" + kind], p99["a_" + kind]
                bound = max(2 * quiet, quiet + 0.020 * h.SCALE)
                self.assertLessEqual(att, bound, "%s control p99 %s under attack, quiet %s, "
                                     "bound %s" % (kind, ms(att), ms(quiet), ms(bound)))
            log("ok: HPACK bomb cut off (max %.3f s per connection), control p99 within bounds"
                % max(closes))
        finally:
            ctl.close()


# ---------------------------------------------------------------- connection errors

class H2ConnectionErrors(h.IntegrationTest):
    """Each connection error must reach the client as a GOAWAY with its code,
    written before the close: floods nghttp2 hands back to dnsveil (PING,
    SETTINGS, CONTINUATION) and a protocol error nghttp2 answers itself."""

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        self.dv = h.Dnsveil(listen=["dns", "https", "http"],
                            upstream=[self.ub], config=h.doh_config(), workers=1,
                                name="doh-goaway")
        self._dnsveils.append(self.dv)
        self.dv.start()

    def _case(self, what, tls, frames, batches, want):
        """Preface + SETTINGS, then `frames` in one burst, up to `batches`
        times, until the server ends the connection; then read to the end.
        A PING or SETTINGS flood is a burst of more than nghttp2's 1000
        unsent ACKs that the server takes in before it writes (one read
        callback: up to 32 KB here); a client that reads its ACKs as they
        come is answered, not flooding."""
        port = self.dv.https_port if tls else self.dv.http_port
        c = RawH2(port, tls=tls)
        t0 = time.monotonic()
        deadline = t0 + h.scaled(10)
        try:
            c.send(client_preface(), deadline)
            n = 0
            for n in range(1, batches + 1):
                if not c.send(frames, deadline, read=False):
                    break
                # the server's answer before the next burst: piling up
                # megabytes after its GOAWAY would only test its linger
                if c.pump(lambda: c.goaway is not None or c.closed is not None, 0.1):
                    break
            c.pump(lambda: c.closed is not None, max(0.1, deadline - time.monotonic()))
        finally:
            c.close()
        proto = "h2" if tls else "h2c"
        log("%s over %s: %d batch(es), %.1f KB sent; GOAWAY %s; connection %s after %.3f s" % (
            what, proto, n, c.sent / 1e3, c.goaway, c.closed,
            (c.t_closed or time.monotonic()) - t0))
        self.assertIsNotNone(c.goaway, "%s over %s: no GOAWAY before the close (%s)"
                             % (what, proto, c.closed))
        self.assertEqual(c.goaway[0], want, "%s over %s: GOAWAY %r" % (what, proto, c.goaway))
        self.assertIn(c.closed, ("eof", "reset"), "%s over %s: not closed" % (what, proto))
        return c

    def _healthy(self):
        c = h.H2Client(self.dv.https_port, tls=True)
        try:
            sid = c.request("GET", wire=h.query_wire(CONTROL_NAME))
            st = c.wait([sid], h.scaled(5))[0]
            self.assertEqual(st.status, 200, repr(st))
        finally:
            c.close()
        self.assertTrue(self.dv.alive())

    def test_ping_flood(self):
        ping = frame(PingFrame(0, b"dnsveil!"))
        for tls in (False, True):
            self._case("PING flood", tls, ping * 3000, 20, ENHANCE_YOUR_CALM)
        self._healthy()

    def test_settings_flood(self):
        settings = frame(SettingsFrame(0))
        for tls in (False, True):
            self._case("SETTINGS flood", tls, settings * 6000, 20, ENHANCE_YOUR_CALM)
        self._healthy()

    def test_continuation_flood(self):
        f = HeadersFrame(1)
        f.data = request_prefix(query_path())
        f.flags.add("END_STREAM")               # no END_HEADERS: more is coming
        flood = frame(f)
        for _ in range(50):
            cf = ContinuationFrame(1)
            cf.data = indexed(16)               # accept-encoding: gzip, deflate
            flood += frame(cf)
        for tls in (False, True):
            self._case("CONTINUATION flood", tls, flood, 1, ENHANCE_YOUR_CALM)
        self._healthy()

    def test_protocol_error(self):
        # DATA on stream 0: nghttp2's own GOAWAY(PROTOCOL_ERROR) must get out too
        for tls in (False, True):
            data0 = b"\x00\x00\x02\x00\x00\x00\x00\x00\x00hi"  # hyperframe refuses to
            self._case("DATA on stream 0", tls, data0, 1, PROTOCOL_ERROR)
        self._healthy()

    def test_header_budget(self):
        """Header blocks under the request limit that decode to ~200 times
        what they weigh (3 references to a 2000-byte entry): the
        connection's header budget ends it."""
        first = request_prefix("/x") + lit_index_new("x-amp", "a" * 2000)
        frames = headers_frame(1, first)
        block = request_prefix("/x") + indexed(62) * 3
        for i in range(200):
            frames += headers_frame(3 + 2 * i, block)
        for tls in (False, True):
            c = self._case("amplified header blocks", tls, frames, 1, ENHANCE_YOUR_CALM)
            self.assertLess(len(c.status), 60, "answered %d of 200 before the GOAWAY"
                            % len(c.status))
        self._healthy()


# ---------------------------------------------------------------- HTTP/1.1 (RFC 9112)

class Http1Strict(h.IntegrationTest):
    """Raw HTTP/1.1 over TLS and in the clear: each violation is answered
    400 with its reason and the connection ends; the same request written
    properly is answered 200."""

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        self.dv = h.Dnsveil(listen=["dns", "https", "http"],
                            upstream=[self.ub], config=h.doh_config(), name="doh-h1")
        self._dnsveils.append(self.dv)
        self.dv.start()

    def _exchange(self, tls, raw):
        port = self.dv.https_port if tls else self.dv.http_port
        s = h.http_connect(port, tls, timeout=h.scaled(5))
        try:
            s.sendall(raw)
            return h.read_until_closed(s, h.scaled(5))
        finally:
            s.close()

    def test_rfc9112_violations(self):
        wire = h.query_wire(CONTROL_NAME)
        b64 = h.b64url(wire)
        get = "GET /dns-query?dns=%s HTTP/1.1" % b64
        smuggled = ("GET /dns-query?dns=%s HTTP/1.1\r\nHost: dns.test\r\n\r\n" % b64).encode()
        cases = [
            # (what, bytes, reason in the body)
            ("whitespace before the colon of Content-Length",
             (b"POST /dns-query HTTP/1.1\r\nHost: dns.test\r\n"
              b"Content-Type: application/dns-message\r\n"
              b"Content-Length : %d\r\n\r\n" % len(smuggled)) + smuggled,
             "whitespace in a header field name"),
            ("whitespace inside a field name",
             ("%s\r\nHost: dns.test\r\nX Y: z\r\n\r\n" % get).encode(),
             "whitespace in a header field name"),
            ("obs-fold",
             ("%s\r\nHost: dns.test\r\nX-A: a\r\n b\r\n\r\n" % get).encode(),
             "obsolete line folding"),
            ("obs-fold before the first field",
             ("%s\r\n Host: dns.test\r\n\r\n" % get).encode(), "obsolete line folding"),
            ("bare LF line ends",
             ("%s\nHost: dns.test\n\n" % get).encode(), "not ended by CRLF"),
            ("one bare LF",
             ("%s\r\nHost: dns.test\nAccept: */*\r\n\r\n" % get).encode(), "not ended by CRLF"),
        ]
        for tls in (True, False):
            proto = "https" if tls else "http"
            for what, raw, reason in cases:
                data, how, secs = self._exchange(tls, raw)
                st, hdrs, body = h.parse_http1(data)
                log("%s over %s: %s %r, then %s after %.3f s" % (
                    what, proto, st, body.decode(errors="replace").strip(), how, secs))
                self.assertEqual(st, 400, "%s over %s: %r" % (what, proto, data[:300]))
                self.assertIn(reason, body.decode(errors="replace"), what)
                self.assertEqual(hdrs.get("connection", "").lower(), "close", what)
                self.assertEqual(data.count(b"HTTP/1.1 "), 1,
                                 "%s over %s: more than one response: %r" % (what, proto, data))
                self.assertIn(how, ("eof", "reset"), "%s over %s: not closed" % (what, proto))
            # the same, written properly
            good = [("%s\r\nHost: dns.test\r\nX-Y: z\r\nX-A: a b\r\nConnection: close\r\n\r\n"
                     % get).encode(),
                    (b"POST /dns-query HTTP/1.1\r\nHost: dns.test\r\n"
                     b"Content-Type: application/dns-message\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(wire)) + wire]
            for raw in good:
                st, hdrs, body = h.parse_http1(self._exchange(tls, raw)[0])
                self.assertEqual(st, 200, "%r -> %s %r" % (raw[:80], st, body[:100]))
        log("ok: RFC 9112 violations are 400 and end the connection, over https and http")


if __name__ == "__main__":
    h.main()
