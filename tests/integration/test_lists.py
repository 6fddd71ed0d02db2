#!/usr/bin/python3
"""Lists from http(s) URLs and files, refreshed off the query path (README
"Policy", "Lists from URLs and their refresh").

A local HTTP server of the test's own (Python's http.server on loopback)
serves a list with an ETag and a Last-Modified, answers 304 to a matching
If-None-Match, and can be told to fail (500) or to send a body over the
list's max-bytes.  One Unbound (zone example.test: h0..h999) answers what
passes.  dnsveil's counters are read from /metrics (curl, as Prometheus
would) and blocked names asked with dnspython over UDP.

Shown: a 304 costs no parse (loads stay, unchanged counts), by ETag and
by Last-Modified alone; a new body is swapped in and blocks at once; bad
lines are counted; a failing (500), oversized or stalled (timeout-ms)
refresh keeps the last good copy and is counted; a restart with the server
down uses the copy kept on disk, with no copy starts with the list empty
(and a warning) rather than not at all, and a changed URL does not use the
old one's copy; an https:// list is checked against policy.ca; a file list
is read again when it changes; queries flowing while the list is swapped
again and again all get their right answer, none fails; and an RPZ list's
actions, asked with kdig (class Rpz)."""

import email.utils
import hashlib
import http.server
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402
from dvtest.doh import curl  # noqa: E402

import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

MAX_BYTES = 64 * 1024
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


class ListServer:
    """An HTTP/1.1 server on 127.0.0.1 serving one list at /list.txt.

    mode: "ok" (200 with ETag and Last-Modified, 304 to a matching
    If-None-Match or a not older If-Modified-Since), "fail" (500) or
    "big" (a 200 body of `big` bytes, no Content-Length: chunked, so that
    only counting the body can stop it).  Every request is logged as
    (If-None-Match, If-Modified-Since, status)."""

    def __init__(self, tls=False):
        self.lock = threading.Lock()
        self.tls = tls
        self.mode = "ok"
        self.send_etag = True
        self.unstall = threading.Event()
        self.big = 4 * MAX_BYTES
        self.requests = []
        self.set_body(b"")
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                inm = self.headers.get("If-None-Match")
                ims = self.headers.get("If-Modified-Since")
                with srv.lock:
                    mode, body, etag, lm = srv.mode, srv.body, srv.etag, srv.last_modified
                    if not srv.send_etag:
                        etag = None
                if mode == "slow":  # the head, then nothing until told (at most 20 s)
                    status = 200
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    srv.unstall.wait(20)
                    return
                if mode == "fail":
                    status = 500
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif mode == "big":
                    status = 200
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    chunk = b"0.0.0.0 x.example.test\n" * 1000
                    sent = 0
                    try:
                        while sent < srv.big:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            sent += len(chunk)
                        self.wfile.write(b"0\r\n\r\n")
                    except OSError:
                        pass  # dnsveil hung up at its max-bytes
                elif (etag and inm == etag) or (not inm and ims == lm):
                    status = 304
                    self.send_response(304)
                    if etag:
                        self.send_header("ETag", etag)
                    self.end_headers()
                else:
                    status = 200
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    if etag:
                        self.send_header("ETag", etag)
                    self.send_header("Last-Modified", lm)
                    self.end_headers()
                    self.wfile.write(body)
                with srv.lock:
                    srv.requests.append((inm, ims, status))

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    super().handle_error(request, client_address)

        self.port = h.free_port()
        self.httpd = Server(("127.0.0.1", self.port), Handler)
        if tls:  # the test certificate (127.0.0.1 among its names)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(h.CERT, h.KEY)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "%s://127.0.0.1:%d/list.txt" % ("https" if self.tls else "http", self.port)

    def set_body(self, body):
        with self.lock:
            self.body = body
            self.etag = '"%s"' % hashlib.sha256(body).hexdigest()[:16]
            self.last_modified = email.utils.formatdate(time.time(), usegmt=True)

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode

    def count(self, status=None, inm=False):
        with self.lock:
            return sum(1 for r in self.requests
                       if (status is None or r[2] == status) and (not inm or r[0]))

    def stop(self):
        self.unstall.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def hosts(names, bad=()):
    text = "# a hosts list\n" + "".join("0.0.0.0 %s\n" % n for n in names)
    return (text + "".join("%s\n" % b for b in bad)).encode()


def metrics(port):
    r = curl("http://127.0.0.1:%d/metrics" % port)
    assert r.status == 200, r
    out = {}
    for line in r.body.decode().splitlines():
        m = re.match(r'^(dnsveil_policy_[a-z_]+)\{(?:list|group)="([^"]*)"\} (\S+)$', line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


class Lists(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        self.tmp = tempfile.mkdtemp(prefix="dv-lists-")
        self.cache_dir = os.path.join(self.tmp, "cache")
        self.file_list = os.path.join(self.tmp, "local.txt")
        with open(self.file_list, "w") as f:
            f.write("h20.example.test\n")
        self.srv = ListServer()
        self.addCleanup(self.srv.stop)
        self.srv.set_body(hosts(["h1.example.test", "h2.example.test"],
                                bad=["not-an-address h3.example.test", "0.0.0.0 bad..name"]))

    def tearDown(self):
        super().tearDown()
        subprocess.run(["rm", "-rf", self.tmp])

    def start(self, url=None, cache_dir=None, refresh=1, name="lists", max_bytes=MAX_BYTES,
              ca=""):
        self.admin_port = h.free_port()
        extra = """lists:
  ads: { source: "%s", format: hosts, refresh-s: %d, max-bytes: %d, timeout-ms: 3000 }
  local: { source: %s, format: domains, refresh-s: %d }
groups:
  default: { block: [ads, local] }
policy:
  cache-dir: %s
  ca: "%s"
admin:
  listen: ["http://127.0.0.1:%d"]
""" % (url or self.srv.url, refresh, max_bytes, self.file_list, refresh,
            cache_dir or self.cache_dir, ca, self.admin_port)
        dv = h.Dnsveil(upstream=[self.ub], config=h.base_config(), extra_yaml=extra, name=name)
        self._dnsveils.append(dv)
        dv.start()
        return dv

    def rcode(self, dv, name):
        q = h.make_query(name, "A")
        return dns.query.udp(q, "127.0.0.1", port=dv.port, timeout=h.scaled(3)).rcode()

    def m(self, fam, list_="ads"):
        return metrics(self.admin_port).get((fam, list_), 0)

    def test_etag_304_new_copy_and_bad_lines(self):
        t0 = time.time()
        dv = self.start()
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NXDOMAIN)
        self.assertEqual(self.rcode(dv, "www.h2.example.test"), dns.rcode.NXDOMAIN)
        self.assertEqual(self.rcode(dv, "h5.example.test"), dns.rcode.NOERROR)
        m = metrics(self.admin_port)
        self.assertEqual(m[("dnsveil_policy_list_entries", "ads")], 2)
        self.assertEqual(m[("dnsveil_policy_list_bad_lines", "ads")], 2)
        self.assertEqual(m[("dnsveil_policy_list_loads_total", "ads")], 1)
        self.assertGreaterEqual(m[("dnsveil_policy_list_last_refresh_timestamp_seconds", "ads")],
                                int(t0))
        self.assertEqual(m[("dnsveil_policy_list_entries", "local")], 1)
        self.assertEqual(m[("dnsveil_policy_group_blocked_total", "default")], 2)
        text = curl("http://127.0.0.1:%d/metrics" % self.admin_port).body.decode()
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout.strip(), r.stderr.strip()), (0, "", ""), r)
        log("ok: at start 2 rules, 2 bad lines counted, h1 and a subdomain of h2 blocked; "
            "promtool check metrics passes with the policy's series")

        # refresh-s 1: conditional requests answered 304 cost no parse
        h.wait_for(lambda: self.srv.count(304) >= 2, h.scaled(10), what="two 304s")
        h.wait_for(lambda: self.m("dnsveil_policy_list_unchanged_total") >= 2, h.scaled(5),
                   what="304s counted")
        self.assertEqual(self.m("dnsveil_policy_list_loads_total"), 1)
        self.assertEqual(self.srv.count(200), 1)
        log("ok: %d conditional requests answered 304, the list parsed once" %
            self.srv.count(304))

        # a new body: fetched, parsed and swapped in
        self.srv.set_body(hosts(["h2.example.test", "h7.example.test"]))
        h.wait_for(lambda: self.rcode(dv, "h7.example.test") == dns.rcode.NXDOMAIN,
                   h.scaled(10), what="h7 blocked after the refresh")
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NOERROR)
        self.assertEqual(self.rcode(dv, "h2.example.test"), dns.rcode.NXDOMAIN)
        m = metrics(self.admin_port)
        self.assertEqual(m[("dnsveil_policy_list_loads_total", "ads")], 2)
        self.assertEqual(m[("dnsveil_policy_list_bad_lines", "ads")], 0)
        self.assertEqual(m[("dnsveil_policy_list_refresh_failures_total", "ads")], 0)
        self.assertGreaterEqual(m[("dnsveil_policy_group_blocked_total", "default")], 4)
        self.assertGreaterEqual(m[("dnsveil_policy_list_blocked_total", "ads")], 4)
        dv.wait_log(r"policy: list ads \(http://127\.0\.0\.1:\d+/list\.txt\): 2 rules")
        log("ok: a new body swapped in: h7 blocked, h1 passes, loads 2")

    def test_https_checked_against_policy_ca(self):
        """An https:// list from a server with the test certificate: with
        policy.ca the test CA, fetched and refreshed (304s); with the
        system store, the certificate is refused and the list is empty."""
        tls = ListServer(tls=True)
        self.addCleanup(tls.stop)
        tls.set_body(hosts(["h1.example.test"]))
        dv = self.start(url=tls.url, ca=h.CA)
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NXDOMAIN)
        h.wait_for(lambda: tls.count(304) >= 1, h.scaled(10), what="a 304 over TLS")
        self.assertEqual(self.m("dnsveil_policy_list_loads_total"), 1)
        self.assertEqual(self.m("dnsveil_policy_list_refresh_failures_total"), 0)
        log("ok: https:// list checked against policy.ca: fetched, then 304s")
        self.stop_dnsveil(dv)

        dv = self.start(url=tls.url, cache_dir=os.path.join(self.tmp, "untrusted"),
                        name="lists-untrusted")
        dv.wait_log(r"policy: list ads: fetching https://.* failed \((SSL peer certificate|"
                    r"Peer certificate|SSL certificate problem)")
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NOERROR)
        self.assertGreaterEqual(self.m("dnsveil_policy_list_refresh_failures_total"), 1)
        log("ok: with the system store the test certificate is refused: no list")

    def test_last_modified_only(self):
        """A server without ETags: If-Modified-Since gets the 304."""
        self.srv.send_etag = False
        dv = self.start()
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NXDOMAIN)
        h.wait_for(lambda: self.srv.count(304) >= 2, h.scaled(10), what="two 304s")
        with self.srv.lock:
            self.assertTrue(all(r[0] is None for r in self.srv.requests))
            self.assertTrue(all(r[1] == self.srv.last_modified
                                for r in self.srv.requests if r[2] == 304))
        h.wait_for(lambda: self.m("dnsveil_policy_list_unchanged_total") >= 2, h.scaled(5),
                   what="304s counted")
        self.assertEqual(self.m("dnsveil_policy_list_loads_total"), 1)
        log("ok: without an ETag, If-Modified-Since with the Last-Modified got %d 304s, one "
            "parse" % self.srv.count(304))

    def test_failure_and_oversize_keep_the_last_good_copy(self):
        dv = self.start()
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NXDOMAIN)
        self.srv.set_body(hosts(["h9.example.test"]))  # new, but never served
        self.srv.set_mode("fail")
        h.wait_for(lambda: self.m("dnsveil_policy_list_refresh_failures_total") >= 2,
                   h.scaled(10), what="failed refreshes counted")
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NXDOMAIN)
        self.assertEqual(self.m("dnsveil_policy_list_loads_total"), 1)
        self.assertEqual(self.m("dnsveil_policy_list_entries"), 2)
        dv.wait_log(r"policy: list ads: fetching .* failed \(HTTP status 500\); the last good "
                    r"copy stays")
        log("ok: HTTP 500 refreshes counted, the last good copy still blocks")

        fails = self.m("dnsveil_policy_list_refresh_failures_total")
        self.srv.set_mode("big")
        h.wait_for(lambda: self.m("dnsveil_policy_list_refresh_failures_total") >= fails + 2,
                   h.scaled(10), what="oversized refreshes counted")
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NXDOMAIN)
        self.assertEqual(self.rcode(dv, "h5.example.test"), dns.rcode.NOERROR)
        self.assertEqual(self.m("dnsveil_policy_list_loads_total"), 1)
        dv.wait_log(r"policy: list ads: fetching .* failed \(the body is over %d bytes\)" %
                    MAX_BYTES)
        with open(os.path.join(self.cache_dir, "ads.list"), "rb") as f:
            self.assertIn(b"h1.example.test", f.read())
        log("ok: bodies over max-bytes cut off and counted; the copy in use and on disk stays")

        fails = self.m("dnsveil_policy_list_refresh_failures_total")
        self.srv.set_mode("slow")  # a head, then a body that never comes
        h.wait_for(lambda: self.m("dnsveil_policy_list_refresh_failures_total") > fails,
                   h.scaled(15), what="a timed-out refresh counted")
        dv.wait_log(r"policy: list ads: fetching .* failed \(Timeout was reached\)")
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NXDOMAIN)
        self.srv.unstall.set()
        log("ok: a fetch over timeout-ms fails and is counted; the copy in use stays")

        self.srv.set_mode("ok")
        h.wait_for(lambda: self.rcode(dv, "h9.example.test") == dns.rcode.NXDOMAIN,
                   h.scaled(10), what="h9 blocked once the server is back")
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NOERROR)
        log("ok: the server back, its new list is swapped in")

    def test_restart_with_the_server_down(self):
        dv = self.start()
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NXDOMAIN)
        self.stop_dnsveil(dv)
        self.srv.stop()
        dead = "http://127.0.0.1:%d/list.txt" % self.srv.port

        dv = self.start(url=dead, name="lists-restart")
        dv.wait_log(r"policy: list ads: using the copy kept in ")
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NXDOMAIN)
        self.assertEqual(self.rcode(dv, "h5.example.test"), dns.rcode.NOERROR)
        self.assertEqual(self.m("dnsveil_policy_list_entries"), 2)
        self.assertGreaterEqual(self.m("dnsveil_policy_list_refresh_failures_total"), 1)
        log("ok: restarted with the list server down: the copy on disk blocks h1")
        self.stop_dnsveil(dv)

        dv = self.start(url=dead, cache_dir=os.path.join(self.tmp, "empty"), name="lists-empty")
        dv.wait_log(r"policy: list ads: no copy kept in .*: the list is empty until a fetch "
                    r"succeeds")
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NOERROR)
        self.assertEqual(self.rcode(dv, "h20.example.test"), dns.rcode.NXDOMAIN)
        self.assertEqual(self.m("dnsveil_policy_list_entries"), 0)
        log("ok: no server and no copy: dnsveil starts, the list empty, the others block")
        self.stop_dnsveil(dv)

        # the source changed to another URL: the copy of the old one is dropped
        dv = self.start(url="http://127.0.0.1:%d/other.txt" % self.srv.port, name="lists-moved")
        dv.wait_log(r"policy: list ads: dropping .*/ads\.list, a copy of another URL")
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NOERROR)
        self.assertFalse(os.path.exists(os.path.join(self.cache_dir, "ads.list")))
        log("ok: a new URL does not use the old URL's copy")

    def test_file_list_read_again_when_it_changes(self):
        dv = self.start()
        self.assertEqual(self.rcode(dv, "h20.example.test"), dns.rcode.NXDOMAIN)
        self.assertEqual(self.rcode(dv, "h21.example.test"), dns.rcode.NOERROR)
        h.wait_for(lambda: self.m("dnsveil_policy_list_unchanged_total", "local") >= 1,
                   h.scaled(5), what="an unchanged file counted")
        self.assertEqual(self.m("dnsveil_policy_list_loads_total", "local"), 1)
        tmp = self.file_list + ".new"
        with open(tmp, "w") as f:
            f.write("h21.example.test\nbad line\n")
        os.rename(tmp, self.file_list)
        h.wait_for(lambda: self.rcode(dv, "h21.example.test") == dns.rcode.NXDOMAIN,
                   h.scaled(10), what="h21 blocked after the file changed")
        self.assertEqual(self.rcode(dv, "h20.example.test"), dns.rcode.NOERROR)
        self.assertEqual(self.m("dnsveil_policy_list_bad_lines", "local"), 1)
        # the URL list, parsed again with it from its copy, still blocks
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NXDOMAIN)
        os.unlink(self.file_list)
        h.wait_for(lambda: self.m("dnsveil_policy_list_refresh_failures_total", "local") >= 1,
                   h.scaled(5), what="a vanished file counted")
        self.assertEqual(self.rcode(dv, "h21.example.test"), dns.rcode.NXDOMAIN)
        log("ok: a changed file is read again; a vanished one keeps the copy in use")

    def test_sighup_reads_every_list_again(self):
        """refresh-s 0: read at start only, until a SIGHUP."""
        dv = self.start(refresh=0)
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NXDOMAIN)
        self.srv.set_body(hosts(["h7.example.test"]))
        with open(self.file_list, "w") as f:
            f.write("h21.example.test\n")
        requests = self.srv.count()
        self.assertEqual(requests, 1)
        os.kill(dv.pid, signal.SIGHUP)
        h.wait_for(lambda: self.rcode(dv, "h7.example.test") == dns.rcode.NXDOMAIN and
                   self.rcode(dv, "h21.example.test") == dns.rcode.NXDOMAIN,
                   h.scaled(10), what="both lists read again after SIGHUP")
        self.assertEqual(self.rcode(dv, "h1.example.test"), dns.rcode.NOERROR)
        self.assertEqual(self.srv.count(), 2)
        self.assertIsNotNone(self.srv.requests[-1][0])  # conditional: If-None-Match
        dv.wait_log(r"SIGHUP: fetching and reading every list again")
        log("ok: with refresh-s 0 the lists stay as read at start; SIGHUP fetches the URL "
            "(one request) and reads the file again")

    def test_swaps_while_queries_flow(self):
        """Two versions of a 20,000-name list alternate every second while
        a client asks without pause: every answer is the right one for a
        name both versions block, one neither does, and none fails."""
        base = ["n%d.blocked.test" % i for i in range(20000)]
        a = hosts(base + ["h1.example.test"])
        b = hosts(base + ["h2.example.test"])
        self.srv.set_body(a)
        dv = self.start(max_bytes=4 << 20)
        stop = threading.Event()
        seen = {"queries": 0, "wrong": [], "errors": 0}

        def ask():
            names = [("n5.blocked.test", dns.rcode.NXDOMAIN),
                     ("h5.example.test", dns.rcode.NOERROR)]
            i = 0
            deadline = time.monotonic() + h.scaled(60)
            while not stop.is_set() and i < 200000 and time.monotonic() < deadline:
                name, want = names[i % 2]
                i += 1
                try:
                    got = self.rcode(dv, name)
                except Exception:  # noqa: BLE001 - counted
                    seen["errors"] += 1
                    continue
                seen["queries"] += 1
                if got != want:
                    seen["wrong"].append((name, got))

        t = threading.Thread(target=ask)
        t.start()
        try:
            for k in range(6):
                loads = self.m("dnsveil_policy_list_loads_total")
                self.srv.set_body(b if k % 2 == 0 else a)
                h.wait_for(lambda: self.m("dnsveil_policy_list_loads_total") > loads,
                           h.scaled(10), what="swap %d" % (k + 1))
        finally:
            stop.set()
            t.join()
        self.assertEqual(self.m("dnsveil_policy_list_loads_total"), 7)
        self.assertEqual(self.m("dnsveil_policy_list_entries"), 20001)
        self.assertEqual(seen["errors"], 0, seen)
        self.assertEqual(seen["wrong"], [], seen)
        self.assertGreater(seen["queries"], 100)
        log("ok: 6 swaps of a 20,001-name list while %d queries flowed: none failed, none "
            "wrong" % seen["queries"])


RPZ = """$TTL 60
$ORIGIN rpz.test.
@ IN SOA localhost. root.localhost. 1 3600 600 86400 60
  IN NS localhost.
h1.example.test CNAME .
h2.example.test CNAME *.
*.wild.example.test CNAME .
ok.wild.example.test CNAME rpz-passthru.
h4.example.test 120 A 192.0.2.44
h4.example.test 120 AAAA 2001:db8::44
h4.example.test 120 A 192.0.2.45
32.1.2.0.192.rpz-ip CNAME .
ns.example.test.rpz-nsdname CNAME .
h6.example.test CNAME rpz-drop.
h7.example.test TXT "local data beyond addresses"
h8.example.test CNAME www.example.test.
outside.example. CNAME .
this is not a record
"""


class Rpz(h.IntegrationTest):
    """An RPZ list next to a plain block list, asked with kdig."""

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        self.tmp = tempfile.mkdtemp(prefix="dv-rpz-")
        rpz = os.path.join(self.tmp, "rpz.zone")
        with open(rpz, "w") as f:
            f.write(RPZ)
        plain = os.path.join(self.tmp, "plain.txt")
        with open(plain, "w") as f:
            f.write("ok.wild.example.test\nh9.example.test\n")
        self.admin_port = h.free_port()
        extra = """lists:
  rpz: { source: %s, format: rpz }
  plain: { source: %s, format: domains }
groups:
  default: { block: [plain, rpz], blocked-ttl: 300 }
admin:
  listen: ["http://127.0.0.1:%d"]
""" % (rpz, plain, self.admin_port)
        self.dv = h.Dnsveil(upstream=[self.ub], config=h.base_config(), extra_yaml=extra,
                            name="rpz")
        self._dnsveils.append(self.dv)
        self.dv.start()

    def tearDown(self):
        super().tearDown()
        subprocess.run(["rm", "-rf", self.tmp])

    def kdig(self, name, rdtype="A"):
        r = h.kdig(self.dv.port, name, rdtype)
        log("kdig %s %s: %s %s" % (name, rdtype, r.status, r.records() + r.records("authority")))
        return r

    def ede(self, name, rdtype="A"):
        q = h.make_query(name, rdtype)
        q.use_edns(0, 0, 1232)
        r = dns.query.udp(q, "127.0.0.1", port=self.dv.port, timeout=h.scaled(3))
        return [(o.code, o.text) for o in r.options if o.otype == 15]

    def test_actions(self):
        r = self.kdig("h1.example.test")
        self.assertEqual(r.status, "NXDOMAIN")
        self.assertEqual([(x[0], x[1], x[2]) for x in r.records("authority")],
                         [("h1.example.test.", "SOA", 60)])
        self.assertEqual(self.ede("h1.example.test"), [(15, "blocked by list rpz")])
        # an exact trigger: not its subdomains
        self.assertEqual(self.kdig("www.h1.example.test").status, "NXDOMAIN")  # upstream's
        self.assertEqual(self.ede("www.h1.example.test"), [])
        r = self.kdig("h2.example.test")
        self.assertEqual((r.status, r.records()), ("NOERROR", []))
        self.assertEqual(r.records("authority")[0][1], "SOA")
        log("ok: CNAME . gives NXDOMAIN (TTL 60 from the zone, EDE 15), CNAME *. NODATA; an "
            "exact trigger leaves the subdomains alone")

        r = self.kdig("x.wild.example.test")
        self.assertEqual(r.status, "NXDOMAIN")
        self.assertEqual(r.records("authority")[0][0], "wild.example.test.")
        self.assertEqual(self.kdig("a.b.wild.example.test").status, "NXDOMAIN")
        r = self.kdig("ok.wild.example.test")  # passthru beats the plain list's rule
        self.assertEqual((r.status, r.records()),
                         ("NOERROR", [("ok.wild.example.test.", "A", 300, "192.0.2.99")]))
        self.assertEqual(self.ede("ok.wild.example.test"), [])
        log("ok: *.wild blocks the names below it; rpz-passthru lets ok.wild through although "
            "the plain list blocks it")

        r = self.kdig("h4.example.test")
        self.assertEqual(r.status, "NOERROR")
        self.assertEqual(sorted(r.records()), [("h4.example.test.", "A", 120, "192.0.2.44"),
                                               ("h4.example.test.", "A", 120, "192.0.2.45")])
        r = self.kdig("h4.example.test", "AAAA")
        self.assertEqual(r.records(), [("h4.example.test.", "AAAA", 120, "2001:db8::44")])
        r = self.kdig("h4.example.test", "MX")
        self.assertEqual((r.status, r.records()), ("NOERROR", []))
        log("ok: local data answers A and AAAA with the zone's records and TTL, NODATA for MX")

        r = self.kdig("h6.example.test")
        self.assertEqual((r.status, len(r.records())), ("NOERROR", 1))  # upstream's
        # local data beyond addresses (test_policy_reload.RpzLocalData has
        # every type): h7's TXT, NODATA for A; h8's CNAME to a name, a
        # rewrite answered alone (www is not the zone's data)
        r = self.kdig("h7.example.test", "TXT")
        self.assertEqual(r.records(), [("h7.example.test.", "TXT", 60,
                                        '"local data beyond addresses"')])
        r = self.kdig("h7.example.test")
        self.assertEqual((r.status, r.records()), ("NOERROR", []))
        r = self.kdig("h8.example.test")
        self.assertEqual(r.records(), [("h8.example.test.", "CNAME", 60, "www.example.test.")])
        self.assertEqual(self.kdig("h9.example.test").status, "NXDOMAIN")  # the plain list
        self.assertEqual(self.ede("h9.example.test"), [(15, "blocked by list plain")])
        m = metrics(self.admin_port)
        self.assertEqual(m[("dnsveil_policy_list_entries", "rpz")], 7)  # h4: one trigger
        # rpz-ip, rpz-nsdname, rpz-drop (h7's TXT and
        # h8's CNAME to a name are local data now)
        self.dv.wait_log(r"policy: list rpz \(.*\): 7 rules \(0 exceptions\), 2 bad lines, 3 "
                         r"skipped")
        self.assertEqual(m[("dnsveil_policy_list_bad_lines", "rpz")], 2)
        self.assertGreaterEqual(m[("dnsveil_policy_list_blocked_total", "rpz")], 8)
        self.assertGreaterEqual(m[("dnsveil_policy_list_allowed_total", "rpz")], 2)
        log("ok: other triggers and actions skipped (3), a bad line and a name outside the "
            "zone counted (2); the plain list still blocks its names")


if __name__ == "__main__":
    h.main()
