#!/usr/bin/python3
"""DNS over HTTPS against hostile HTTP clients, through the real binary.

HTTP/2 (frames built with python3-hyperframe, the client preface and
SETTINGS from python3-h2, HPACK by hand where the attack needs exact bytes;
the server's frames are parsed raw, so its GOAWAY and RST_STREAM codes are
seen even after python3-h2 would have given up on the connection):

  - connection errors must be a GOAWAY with the right code, written before
    the close: a CONTINUATION flood, a PING flood, a SETTINGS flood
    (ENHANCE_YOUR_CALM) and a plain protocol error, DATA on stream 0
    (PROTOCOL_ERROR).
"""

import os
import select
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import log  # noqa: E402
import dotutil as du  # noqa: E402
import dohutil as dh  # noqa: E402

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import hpack  # noqa: E402
from hyperframe.frame import (ContinuationFrame, HeadersFrame, PingFrame,  # noqa: E402
                              SettingsFrame)

du.ensure_dev_certs()

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
    return "/dns-query?dns=" + dh.b64url(dh.query_wire(CONTROL_NAME))


# ---------------------------------------------------------------- raw HTTP/2 peer

class RawH2:
    """A client socket (h2c or TLS with ALPN h2) that writes whatever bytes it
    is given and parses what the server sends frame by frame: GOAWAY (code,
    last stream), RST_STREAM codes, response :status per stream (decoded
    with its own HPACK decoder), and how the connection ended."""

    def __init__(self, port, tls=False, timeout=5.0):
        self.sock = du.tcp_connect(port, timeout=timeout)
        if tls:
            self.sock = dh.tls_context(("h2",)).wrap_socket(self.sock,
                                                            server_hostname=du.AUTH_NAME)
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


# ---------------------------------------------------------------- connection errors

class H2ConnectionErrors(h.IntegrationTest):
    """Each connection error must reach the client as a GOAWAY with its code,
    written before the close: floods nghttp2 hands back to dnsveil (PING,
    SETTINGS, CONTINUATION) and a protocol error nghttp2 answers itself."""

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        self.dv = dh.DohDnsveil(upstream=[self.ub], config=dh.doh_config(), workers=1,
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
        c = dh.H2Client(self.dv.https_port, tls=True)
        try:
            sid = c.request("GET", wire=dh.query_wire(CONTROL_NAME))
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


if __name__ == "__main__":
    h.main()
