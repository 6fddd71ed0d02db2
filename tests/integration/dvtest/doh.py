"""DNS over HTTPS on the client side: DoH requests on a raw HTTP/1.1
socket, curl, an HTTP/2 client on python3-h2 (TLS with ALPN h2, or h2c with
prior knowledge), h2load, and a small page server on loopback (for the
browser test).  Everything stays on loopback."""

import base64
import http.server
import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import h2.config  # python3-h2
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from .env import free_port, log, scaled
from .tls import AUTH_NAME, CA, client_context, read_until_closed, tcp_connect
from .wire import make_query


PATH = "/dns-query"
CURL = shutil.which("curl", path="/usr/bin:/bin") or "curl"
H2LOAD = shutil.which("h2load", path="/usr/bin:/bin") or "h2load"

# Test-zone names that point at loopback, served by our Unbound as
# local-data inside example.test (the zone itself has ns.example.test ->
# 127.0.0.1; these are explicit and only for the DoH tests).  Nothing
# outside the test Unbound knows them.
LOOPBACK_NAMES = ("web.example.test", "web2.example.test", "web3.example.test")
LOCAL_TTL = 300


def loopback_local_data(names=LOOPBACK_NAMES, addr="127.0.0.1"):
    """extra_server_conf for Unbound: the names as A records."""
    return "\n".join('  local-data: "%s. %d IN A %s"' % (n, LOCAL_TTL, addr) for n in names)


def b64url(wire, pad=False):
    s = base64.urlsafe_b64encode(wire).decode()
    return s if pad else s.rstrip("=")


def query_wire(name, rdtype="A", qid=0, **kw):
    return make_query(name, rdtype, qid=qid, **kw).to_wire()


def min_ttl(msg):
    """Smallest TTL of every record (OPT excluded), or None."""
    ttls = [rr.ttl for sec in (msg.answer, msg.authority, msg.additional) for rr in sec]
    return min(ttls) if ttls else None


def max_age(cache_control):
    m = re.search(r"max-age=(\d+)", cache_control or "")
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------- HTTP/1.1 raw

def http_connect(port, tls, alpn=("http/1.1",), timeout=None):
    s = tcp_connect(port, timeout=timeout)
    if tls:
        try:
            s = client_context(alpn=alpn).wrap_socket(s, server_hostname=AUTH_NAME)
        except BaseException:
            s.close()
            raise
    return s


def get_request(wire, path=PATH, extra_headers=(), close=True, pad=False):
    hdrs = "".join("%s: %s\r\n" % kv for kv in extra_headers)
    return ("GET %s?dns=%s HTTP/1.1\r\nHost: dns.test\r\nAccept: application/dns-message\r\n"
            "%s%s\r\n" % (path, b64url(wire, pad), hdrs,
                          "Connection: close\r\n" if close else "")).encode()


def parse_http1(data):
    """(status, headers dict lowercased, body) of the first response in
    `data` (content-length framed), or (None, {}, b"")."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None, {}, b""
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        return None, {}, b""
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", len(rest)))
    return int(m.group(1)), hdrs, rest[:n]


def http1_request(port, tls, raw, timeout=None):
    """Send raw bytes (a whole request with Connection: close) on a fresh
    connection; returns (status, headers, body) of the response."""
    s = http_connect(port, tls, timeout=timeout)
    try:
        s.sendall(raw)
        data, _, _ = read_until_closed(s, timeout or scaled(5))
    finally:
        s.close()
    return parse_http1(data)


# ---------------------------------------------------------------- curl

class CurlResult:
    def __init__(self, cmd, rc, status, version, headers, body, stderr):
        self.cmd, self.rc, self.status, self.version = cmd, rc, status, version
        self.headers, self.body, self.stderr = headers, body, stderr

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "<curl rc=%s status=%s http/%s headers=%s body=%r stderr=%r>\n  %s" % (
            self.rc, self.status, self.version, self.headers, self.body[:200],
            self.stderr.strip()[-400:], " ".join(self.cmd))


def curl(*args, timeout=None):
    """curl -sS with the test CA; returns a CurlResult (status, HTTP
    version, headers of the last response, body bytes)."""
    t = timeout or scaled(10)
    d = tempfile.mkdtemp(prefix="dv-curl-")
    try:
        hf, bf = os.path.join(d, "h"), os.path.join(d, "b")
        cmd = [CURL, "-sS", "--cacert", CA, "--max-time", str(int(t)), "-D", hf, "-o", bf,
               "-w", "%{http_code} %{http_version}"] + list(args)
        r = subprocess.run(cmd, capture_output=True, timeout=t + 10)
        out = r.stdout.decode(errors="replace").split()
        status = int(out[0]) if out and out[0].isdigit() else None
        version = out[1] if len(out) > 1 else None
        headers = {}
        if os.path.exists(hf):
            with open(hf, "rb") as f:
                blocks = [b for b in f.read().decode("latin-1").split("\r\n\r\n") if b.strip()]
            if blocks:
                for line in blocks[-1].split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
        body = b""
        if os.path.exists(bf):
            with open(bf, "rb") as f:
                body = f.read()
        return CurlResult(cmd, r.returncode, status, version, headers, body,
                          r.stderr.decode(errors="replace"))
    finally:
        shutil.rmtree(d, ignore_errors=True)


CURL_MODES = {
    # name: (tls, curl flag, expected %{http_version})
    "https-h2": (True, "--http2", "2"),
    "https-http1.1": (True, "--http1.1", "1.1"),
    "h2c": (False, "--http2-prior-knowledge", "2"),
    "http-http1.1": (False, "--http1.1", "1.1"),
}


def curl_get(dv, mode, wire, path=None, extra=()):
    tls, flag, _ = CURL_MODES[mode]
    return curl(flag, *extra, dv.url(tls, path) + "?dns=" + b64url(wire))


def curl_post(dv, mode, wire, path=None, content_type="application/dns-message", extra=()):
    tls, flag, _ = CURL_MODES[mode]
    d = tempfile.mkdtemp(prefix="dv-curl-body-")
    try:
        p = os.path.join(d, "query.bin")
        with open(p, "wb") as f:
            f.write(wire)
        return curl(flag, *extra, "-H", "content-type: " + content_type,
                    "--data-binary", "@" + p, dv.url(tls, path))
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- HTTP/2 (python3-h2)

class H2Stream:
    def __init__(self, sid):
        self.sid = sid
        self.status = None
        self.headers = {}
        self.body = b""
        self.ended = False
        self.reset = None          # error code of a RST_STREAM received
        self.t_end = None

    @property
    def done(self):
        return self.ended or self.reset is not None

    def __repr__(self):
        return "<h2 stream %d status=%s ended=%s reset=%s headers=%s body=%r>" % (
            self.sid, self.status, self.ended, self.reset, self.headers, self.body[:120])


class H2Client:
    """One HTTP/2 connection: TLS with ALPN h2 (verifying the test CA and
    dns.test) or h2c with prior knowledge.  Not thread-safe; every wait is
    bounded by a deadline."""

    def __init__(self, port, tls=True, timeout=None):
        self.tls = tls
        self.sock = tcp_connect(port, timeout=timeout)
        if tls:
            try:
                self.sock = client_context(alpn=("h2",)).wrap_socket(self.sock,
                                                             server_hostname=AUTH_NAME)
            except BaseException:
                self.sock.close()
                raise
            if self.sock.selected_alpn_protocol() != "h2":
                raise AssertionError("ALPN h2 not negotiated (got %r)" %
                                     self.sock.selected_alpn_protocol())
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.streams = {}
        self.goaway = None          # the last GOAWAY received (.error_code, .last_stream_id)
        self.goaways = []           # every GOAWAY received
        self._rx = b""
        self._raw = False           # after a GOAWAY: frames are parsed here (see _feed)
        self.closed = None          # 'eof' / 'reset' / 'tls error'
        self.t_closed = None
        self.remote_settings = {}
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except (OSError, ssl.SSLError):
                pass

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def request(self, method="GET", path=PATH, wire=None, body=None, headers=(),
                end_stream=True, content_type="application/dns-message", authority="dns.test"):
        """Open a stream.  GET: `wire` goes into ?dns=; POST: `body` (or
        `wire`) is the body, sent at once (must fit the flow-control
        window) unless end_stream=False leaves the request open."""
        sid = self.conn.get_next_available_stream_id()
        if method == "GET" and wire is not None:
            path = path + "?dns=" + b64url(wire)
        hdrs = [(":method", method), (":scheme", "https" if self.tls else "http"),
                (":authority", authority), (":path", path), ("accept", "application/dns-message")]
        if body is None and method == "POST":
            body = wire
        if body is not None and content_type:
            hdrs.append(("content-type", content_type))
        hdrs += list(headers)
        self.streams[sid] = H2Stream(sid)
        has_body = body is not None and len(body) > 0
        self.conn.send_headers(sid, hdrs, end_stream=end_stream and not has_body)
        if has_body:
            self.conn.send_data(sid, body, end_stream=end_stream)
        self.flush()
        return sid

    def _handle(self, ev):
        now = time.monotonic()
        if isinstance(ev, h2.events.ResponseReceived):
            st = self.streams.setdefault(ev.stream_id, H2Stream(ev.stream_id))
            st.headers = {k: v for k, v in ev.headers}
            st.status = int(st.headers.get(":status", 0))
        elif isinstance(ev, h2.events.DataReceived):
            st = self.streams.setdefault(ev.stream_id, H2Stream(ev.stream_id))
            st.body += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            st = self.streams.setdefault(ev.stream_id, H2Stream(ev.stream_id))
            st.ended, st.t_end = True, now
        elif isinstance(ev, h2.events.StreamReset):
            st = self.streams.setdefault(ev.stream_id, H2Stream(ev.stream_id))
            st.reset = int(ev.error_code)
            if st.t_end is None:
                st.t_end = now
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
            self.goaways.append(ev)
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            for k, v in ev.changed_settings.items():
                self.remote_settings[int(k)] = v.new_value

    def pump(self, until=None, timeout=None):
        """Read and handle frames until until() is true, the connection is
        closed, or `timeout` passes.  Returns until()'s value (or None)."""
        deadline = time.monotonic() + (timeout if timeout is not None else scaled(5))
        while True:
            if until is not None:
                v = until()
                if v:
                    return v
            if self.closed:
                return until() if until else None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
                r, _, _ = select.select([self.sock], [], [], min(left, 0.2))
                if not r:
                    continue
            try:
                self.sock.settimeout(max(0.01, left))
                data = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except ssl.SSLError:
                self.closed, self.t_closed = "tls error", time.monotonic()
                continue
            except ConnectionError:
                self.closed, self.t_closed = "reset", time.monotonic()
                continue
            if not data:
                self.closed, self.t_closed = "eof", time.monotonic()
                continue
            self._feed(data)
            self.flush()

    def _feed(self, data):
        """Hand complete frames to python3-h2 one at a time.  python3-h2
        (4.1) closes its connection state on the first GOAWAY and then
        refuses the frames a server still sends on streams up to the
        GOAWAY's last stream id (RFC 9113 6.8 graceful shutdown); from the
        first GOAWAY on, HEADERS (decoded with the connection's HPACK
        decoder), DATA, RST_STREAM and GOAWAY are handled here."""
        self._rx += data
        while len(self._rx) >= 9:
            n = int.from_bytes(self._rx[:3], "big")
            if len(self._rx) < 9 + n:
                return
            frame, self._rx = self._rx[:9 + n], self._rx[9 + n:]
            ftype, flags = frame[3], frame[4]
            sid = int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
            if not self._raw:
                try:
                    events = self.conn.receive_data(frame)
                except h2.exceptions.ProtocolError as e:
                    raise AssertionError("HTTP/2 protocol error from dnsveil: %r" % e)
                for ev in events:
                    self._handle(ev)
                if ftype == 7:
                    self._raw = True
                continue
            self._raw_frame(ftype, flags, sid, frame[9:])

    def _raw_frame(self, ftype, flags, sid, payload):
        now = time.monotonic()
        if ftype in (0, 1) and flags & 0x8:         # PADDED
            pad = payload[0]
            payload = payload[1:len(payload) - pad]
        if ftype == 1:                              # HEADERS
            if flags & 0x20:                        # PRIORITY
                payload = payload[5:]
            st = self.streams.setdefault(sid, H2Stream(sid))
            hdrs = self.conn.decoder.decode(payload)
            st.headers = {(k.decode() if isinstance(k, bytes) else k):
                          (v.decode() if isinstance(v, bytes) else v) for k, v in hdrs}
            if ":status" in st.headers:
                st.status = int(st.headers[":status"])
        elif ftype == 0:                            # DATA
            self.streams.setdefault(sid, H2Stream(sid)).body += payload
        elif ftype == 3:                            # RST_STREAM
            st = self.streams.setdefault(sid, H2Stream(sid))
            st.reset = int.from_bytes(payload[:4], "big")
            st.t_end = st.t_end or now
        elif ftype == 7:                            # GOAWAY
            ev = h2.events.ConnectionTerminated()
            ev.last_stream_id = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            ev.error_code = int.from_bytes(payload[4:8], "big")
            ev.additional_data = payload[8:]
            self.goaway = ev
            self.goaways.append(ev)
        if ftype in (0, 1) and flags & 0x1:         # END_STREAM
            st = self.streams.setdefault(sid, H2Stream(sid))
            st.ended, st.t_end = True, now

    def wait(self, sids, timeout=None):
        """Wait until every stream in `sids` ended or was reset."""
        sids = list(sids)
        self.pump(lambda: all(self.streams[s].done for s in sids), timeout)
        return [self.streams[s] for s in sids]

    def send_body_flow(self, sid, body, end_stream=True, timeout=None, stop=None):
        """Send `body` on stream `sid` as flow control allows (waiting for
        WINDOW_UPDATEs), until sent, stop() is true, or the stream is done.
        Returns the number of bytes sent."""
        deadline = time.monotonic() + (timeout or scaled(5))
        sent = 0
        st = self.streams[sid]
        while sent < len(body) and time.monotonic() < deadline:
            if st.done or self.closed or (stop and stop()):
                return sent
            try:
                win = min(self.conn.local_flow_control_window(sid),
                          self.conn.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                return sent
            if win <= 0:
                self.pump(lambda: st.done or self.conn.local_flow_control_window(sid) > 0,
                          min(0.5, max(0.01, deadline - time.monotonic())))
                continue
            chunk = body[sent:sent + win]
            last = sent + len(chunk) >= len(body)
            try:
                self.conn.send_data(sid, chunk, end_stream=end_stream and last)
            except h2.exceptions.StreamClosedError:
                return sent
            sent += len(chunk)
            self.flush()
            self.pump(None, 0)
        return sent


# ---------------------------------------------------------------- a page on loopback

class PageServer:
    """A tiny HTTP/1.1 server on 127.0.0.1:PORT (its own thread) serving
    one HTML page with a unique marker for every path; counts requests
    and the Host headers it saw."""

    def __init__(self, marker):
        self.marker = marker
        self.port = free_port()
        self.hosts = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server API
                outer.hosts.append(self.headers.get("Host", ""))
                body = ("<!doctype html><html><head><title>dnsveil DoH test</title></head>"
                        "<body><p id=m>%s</p></body></html>\n" % outer.marker).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.1}, daemon=True)

    def start(self):
        self.thread.start()
        log("page server on 127.0.0.1:%d (marker %s)" % (self.port, self.marker))
        return self

    def url(self, name, path="/"):
        return "http://%s:%d%s" % (name, self.port, path)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def run_h2load(url, body_path, *opts, timeout=None):
    """h2load POSTing body_path; returns (dict, output)."""
    cmd = [H2LOAD] + list(opts) + ["-d", body_path, "-H", "content-type: application/dns-message",
                                   url]
    log("running: " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                       timeout=timeout or scaled(60))
    out = r.stdout + r.stderr
    res = {"rc": r.returncode}
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    if m:
        for k, v in zip(("total", "started", "done", "succeeded", "failed", "errored",
                         "timeout"), m.groups()):
            res[k] = int(v)
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    if m:
        res["req_per_s"] = float(m.group(3))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if m:
        res["2xx"], res["4xx"], res["5xx"] = int(m.group(1)), int(m.group(3)), int(m.group(4))
    m = re.search(r"Application protocol: (\S+)", out)
    if m:
        res["proto"] = m.group(1)
    return res, out
