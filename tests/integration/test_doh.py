#!/usr/bin/python3
"""DNS over HTTPS (RFC 8484) with real clients and hostile ones.

dnsveil listens on dns://127.0.0.1:PORT (what the harness polls),
https://127.0.0.1:HTTPS_PORT/dns-query (TLS with certs/dev-cert.pem, ALPN
h2 and http/1.1) and http://127.0.0.1:HTTP_PORT/dns-query (h2c with prior
knowledge or HTTP/1.1); Unbound serves the example.test zone plus
web*.example.test -> 127.0.0.1 (local-data), so a page on a loopback HTTP
server can be reached by a name that only DoH can resolve.

Clients: curl (--doh-url; GET/POST over h2, HTTP/1.1, h2c), kdig
(+https POST and GET), dnspython's DoH client (httpx), dnsperf -m doh
(-q 1: its DoH mode loses queries with more in flight), h2load (h2 and
h2c), python3-h2 (many streams on one connection, unfinished streams,
GOAWAY on drain) and raw sockets (505, slow-loris).

Error answers (src/proto/doh.h): 400 404 405 413 415 431 505, each over HTTP/2
and HTTP/1.1 (TLS and cleartext) and each followed by a good request.
curl 7.88 often fails (exit 92, HTTP/2 stream error, no status) when an
HTTP/2 error answer arrives before its request body was sent, followed by
RST_STREAM(NO_ERROR) - which RFC 9113 8.1 allows and requires clients to
accept: 413 and 415 over HTTP/2 are therefore checked with python3-h2.

limits.tcp-read-timeout-ms is 1000 and tcp-idle-timeout-ms 4000 here: a
slow-loris HTTP/1.1 client and an HTTP/2 request that never finishes must
be cut off.
"""

import os
import shutil
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402
import h2.settings  # noqa: E402

WEB = "web.example.test"
WEB_ADDR = "127.0.0.1"
SLOW_ADDR = "192.0.2.200"
READ_TIMEOUT_MS = 1000
IDLE_TIMEOUT_MS = 4000

h.ensure_dev_certs()

_key_checks = {}


def config_key_status(name, candidates):
    """('ok', snippet) for the first YAML snippet `dnsveil --check-config`
    accepts, ('unknown', output) when it says the key is unknown, or
    ('rejected', output) when every form was refused for another reason."""
    if name not in _key_checks:
        outs = []
        res = None
        for snippet in candidates:
            st, out = h.check_config_key(snippet)
            if st == "ok":
                res = ("ok", snippet)
                break
            if st == "unknown":
                res = ("unknown", out)
                break
            outs.append("%s-> %s" % (snippet, out))
        _key_checks[name] = res or ("rejected", "\n".join(outs))
    return _key_checks[name]


class DohBase(h.IntegrationTest):
    """Unbound (with web*.example.test -> 127.0.0.1, optionally slow.
    example.test delegated to a SlowAuthority) and a dnsveil with DoH
    listeners."""

    slow = False
    workers = 2

    def setUp(self):
        super().setUp()
        self.slow_auth = self.start_slow(delay=1.0, address=SLOW_ADDR) if self.slow else None
        self.ub = self.start_unbound(slow=self.slow_auth, log_queries=False,
                                     extra_server_conf=h.loopback_local_data())
        self.dv = self.start_doh()

    def start_doh(self, extra_yaml="", limits=None, workers=None, name="doh"):
        lim = {"tcp-read-timeout-ms": READ_TIMEOUT_MS, "tcp-idle-timeout-ms": IDLE_TIMEOUT_MS}
        lim.update(limits or {})
        d = h.Dnsveil(listen=["dns", "https", "http"], upstream=[self.ub],
                      config=h.doh_config(limits=lim), extra_yaml=extra_yaml,
                      workers=workers or self.workers, name=name)
        self._dnsveils.append(d)
        return d.start()

    # -- checks
    def check_answer(self, status, headers, body, qname, want, qid, what, rcode="NOERROR"):
        """A 200 DoH answer: content-type, content-length, max-age equal to
        the smallest TTL in the message, the question, id and records."""
        self.assertEqual(status, 200, "%s: status %s, headers %s, body %r" % (
            what, status, headers, body[:200]))
        self.assertEqual(headers.get("content-type"), "application/dns-message",
                         "%s: %s" % (what, headers))
        self.assertEqual(headers.get("content-length"), str(len(body)),
                         "%s: content-length vs %d body bytes: %s" % (what, len(body), headers))
        try:
            m = dns.message.from_wire(body)
        except Exception as e:  # noqa: BLE001
            self.fail("%s: body is not a DNS message (%s): %r" % (what, e, body[:100]))
        self.assertEqual(m.id, qid, "%s: DNS id %d, sent %d" % (what, m.id, qid))
        self.assertEqual(dns.rcode.to_text(m.rcode()), rcode, "%s:\n%s" % (what, m))
        self.assertEqual(m.question[0].name.to_text().lower(), qname.lower().rstrip(".") + ".",
                         "%s:\n%s" % (what, m))
        if want is not None:
            self.assertEqual(h.a_records(m), want, "%s:\n%s" % (what, m))
        age = h.max_age(headers.get("cache-control"))
        ttl = h.min_ttl(m)
        self.assertIsNotNone(age, "%s: no cache-control max-age: %s" % (what, headers))
        if ttl is not None:
            self.assertEqual(age, ttl, "%s: cache-control %s, smallest TTL in the answer %d" % (
                what, headers.get("cache-control"), ttl))
        if rcode == "NXDOMAIN":
            soa = [rr for rr in m.authority if rr.rdtype == dns.rdatatype.SOA]
            self.assertTrue(soa, "%s: NXDOMAIN without SOA:\n%s" % (what, m))
            neg = min(soa[0].ttl, soa[0][0].minimum)
            self.assertLessEqual(age, neg, "%s: negative answer max-age %d over the SOA "
                                 "negative TTL %d" % (what, age, neg))
        return m, age

    def check_curl_answer(self, r, mode, qname, want, qid, what):
        self.assertEqual(r.rc, 0, "%s: %r" % (what, r))
        self.assertEqual(r.version, h.CURL_MODES[mode][2], "%s: HTTP version: %r" % (what, r))
        return self.check_answer(r.status, r.headers, r.body, qname, want, qid,
                                 "%s (%r)" % (what, r))

    def assert_good(self, mode, what, dv=None):
        """dnsveil is alive and answers a good GET in this curl mode."""
        dv = dv or self.dv
        self.assertTrue(dv.alive(), "dnsveil died after %s (exit %s):\n%s" % (
            what, dv.proc.returncode, h.tail(dv.stderr_path)))
        r = h.curl_get(dv, mode, h.query_wire(WEB))
        self.check_curl_answer(r, mode, WEB, [WEB_ADDR], 0, "good GET (%s) after %s" % (
            mode, what))

    def h2_good(self, c, what):
        sid = c.request("GET", wire=h.query_wire(WEB))
        st = c.wait([sid])[0]
        self.check_answer(st.status, st.headers, st.body, WEB, [WEB_ADDR], 0,
                          "good GET on the same HTTP/2 connection after %s: %r" % (what, st))


# ====================================================================== clients

class DohClients(DohBase):

    # ------------------------------------------------------------- 1. curl --doh-url
    def test_01_curl_doh_url_fetches_page(self):
        marker = "dnsveil-doh-curl-%s" % h.unique_label("m")
        page = h.PageServer(marker).start()
        self.addCleanup(page.stop)
        st0 = self.dv.stats()
        r = h.curl("--doh-url", self.dv.url(True), page.url(WEB))
        st1 = self.dv.stats()
        log("curl --doh-url %s %s: rc %d, status %s, dnsveil queries +%d" % (
            self.dv.url(True), page.url(WEB), r.rc, r.status, st1["queries"] - st0["queries"]))
        self.assertEqual((r.rc, r.status), (0, 200), repr(r))
        self.assertIn(marker.encode(), r.body, repr(r))
        self.assertIn("%s:%d" % (WEB, page.port), page.hosts)
        self.assertGreaterEqual(st1["queries"] - st0["queries"], 1,
                                "curl resolved %s without asking dnsveil?" % WEB)
        log("ok: curl --doh-url resolved %s through dnsveil and fetched the page" % WEB)

        # a DoH URL with a host name: the certificate name is checked
        r = h.curl("--doh-url", "https://dns.test:%d/dns-query" % self.dv.https_port,
                    "--resolve", "dns.test:%d:127.0.0.1" % self.dv.https_port,
                    page.url("web2.example.test"))
        self.assertEqual((r.rc, r.status), (0, 200), repr(r))
        self.assertIn(marker.encode(), r.body, repr(r))
        log("ok: --doh-url https://dns.test:PORT (name verified) works too (curl refuses "
            "http:// DoH URLs itself: 'Protocol http not supported')")

    # ------------------------------------------------------------- 2. curl GET/POST
    def test_02_curl_get_post_every_protocol(self):
        i = 0
        for mode in h.CURL_MODES:
            for method in ("GET", "POST"):
                i += 1
                name = "h%d.example.test" % (100 + i)
                want = [h.host_addr(100 + i)]
                for qid in (0, 0xBEEF):
                    wire = h.query_wire(name, qid=qid)
                    r = (h.curl_get if method == "GET" else h.curl_post)(self.dv, mode, wire)
                    _, age = self.check_curl_answer(r, mode, name, want, qid, "%s %s id %d" % (
                        mode, method, qid))
                log("ok: %-13s %-4s -> 200 HTTP/%s application/dns-message, content-length, "
                    "max-age=%d, ids 0 and 0xbeef" % (mode, method, r.version, age))
        # a cached answer: max-age follows the aged TTL (still equal to it)
        time.sleep(1.1)
        r = h.curl_get(self.dv, "https-h2", h.query_wire("h101.example.test"))
        _, age = self.check_curl_answer(r, "https-h2", "h101.example.test",
                                        [h.host_addr(101)], 0, "cached GET")
        self.assertLess(age, 300, "a cached answer a second later must have an aged TTL")
        # padding in the dns parameter is tolerated
        wire = h.query_wire("h7.example.test")
        if len(wire) % 3 == 0:
            wire = h.query_wire("h77.example.test")
        r = h.curl("--http2", self.dv.url(True) + "?dns=" + h.b64url(wire, pad=True))
        self.check_curl_answer(r, "https-h2", dns.message.from_wire(wire).question[0].name
                               .to_text(), None, 0, "GET with '=' padding")
        # a negative answer: max-age <= the SOA negative TTL
        r = h.curl_get(self.dv, "https-http1.1", h.query_wire("nope.example.test"))
        self.assertEqual(r.rc, 0, repr(r))
        _, age = self.check_answer(r.status, r.headers, r.body, "nope.example.test", [], 0,
                                   "NXDOMAIN (%r)" % r, rcode="NXDOMAIN")
        log("ok: padded base64url accepted; NXDOMAIN max-age %d" % age)

    # ------------------------------------------------------------- 3. kdig
    def test_03_kdig_https_post_and_get(self):
        port = self.dv.https_port
        for extra in ((), ("+https-get",)):
            what = "kdig +https=/dns-query %s" % " ".join(extra)
            r = h.kdig(port, WEB, "A", "+https=/dns-query", *extra,
                       "+tls-ca=%s" % h.CA, "+tls-hostname=dns.test")
            self.assertEqual(r.rc, 0, "%s: %r" % (what, r))
            self.assertEqual(r.status, "NOERROR", "%s: %r" % (what, r))
            self.assertEqual([x[3] for x in r.records()], [WEB_ADDR], "%s: %r" % (what, r))
            self.assertNotIn("WARNING", r.stderr, "%s: %r" % (what, r))
            log("ok: %s +tls-ca +tls-hostname=dns.test -> %s" % (what, WEB_ADDR))
        r = h.kdig(port, WEB, "A", "+https=/dns-query", "+tls-ca=%s" % h.CA,
                   "+tls-hostname=wrong.test")
        self.assertEqual(r.messages, [], "kdig with the wrong name must not get an answer: %r"
                         % r)
        log("ok: kdig +https with +tls-hostname=wrong.test fails verification")

    # ------------------------------------------------------------- 4. dnspython
    def test_04_dnspython_https(self):
        for post in (True, False):
            q = h.make_query(WEB)
            m = dns.query.https(q, self.dv.url(True), post=post, verify=h.CA,
                                timeout=h.scaled(5))
            self.assertEqual((m.id, dns.rcode.to_text(m.rcode()), h.a_records(m)),
                             (q.id, "NOERROR", [WEB_ADDR]), str(m))
            log("ok: dns.query.https(%s, verify=certs/ca.pem) -> %s (httpx, HTTP/2: %s)" % (
                "POST" if post else "GET", WEB_ADDR, getattr(dns.query, "_have_http2", "?")))

    # ------------------------------------------------------------- 5. dnsperf
    def test_05_dnsperf_doh(self):
        d = tempfile.mkdtemp(prefix="dv-doh-dnsperf-")
        self.addCleanup(shutil.rmtree, d, True)
        qf = os.path.join(d, "queries.txt")
        with open(qf, "w") as f:
            for i in range(200):
                f.write("h%d.example.test A\n" % i)
        secs = str(int(round(h.scaled(3))))
        for method in ("GET", "POST"):
            res, out = h.dnsperf(self.dv.https_port, qf, "-m", "doh", "-O",
                                 "doh-uri=%s" % self.dv.url(True), "-O", "doh-method=%s" % method,
                                 "-c", "4", "-q", "1", "-l", secs, timeout=h.scaled(60))
            log("dnsperf -m doh %s -c 4 -q 1 -l %s: %s" % (method, secs, res))
            self.assertEqual(res.get("lost"), 0, "dnsperf doh %s lost queries:\n%s" % (
                method, out))
            self.assertGreater(res.get("completed", 0), 10, out)
            self.assertEqual(res.get("noerror"), res.get("completed"), out)
            self.assertIn("200: %d" % res["completed"], out, out)
        log("ok: dnsperf -m doh GET and POST, -c 4 -q 1: no query lost (dnsperf's DoH loop "
            "paces itself: qps %s is dnsperf's, not dnsveil's)" % res.get("qps"))

    # ------------------------------------------------------------- 6. h2load
    def test_06_h2load(self):
        d = tempfile.mkdtemp(prefix="dv-doh-h2load-")
        self.addCleanup(shutil.rmtree, d, True)
        body = os.path.join(d, "body.bin")
        with open(body, "wb") as f:
            f.write(h.query_wire("www.example.test"))
        runs = [(self.dv.url(True), ("-n", "2000", "-c", "4", "-m", "10"), "h2"),
                (self.dv.url(False), ("-n", "2000", "-c", "4", "-m", "10"), "h2c"),
                (self.dv.url(True), ("-n", "2000", "-c", "1", "-m", "100"), "h2")]
        for url, opts, proto in runs:
            res, out = h.run_h2load(url, body, *opts)
            log("h2load %s %s: %s" % (" ".join(opts), url, res))
            self.assertEqual(res.get("proto"), proto, out)
            self.assertEqual(res.get("succeeded"), 2000, "h2load %s %s:\n%s" % (
                " ".join(opts), url, out))
            self.assertEqual(res.get("2xx"), 2000, out)
        self.assertTrue(self.dv.alive())
        log("ok: h2load 2000/2000 succeeded over h2 and h2c (-c 4 -m 10, -c 1 -m 100)")


# ====================================================================== errors

class DohErrors(DohBase):

    def test_curl_reads_early_errors_over_h2(self):
        """An HTTP/2 error answered before the request body is complete
        (PUT, a wrong content type, an unknown path, a 70 KB body) reaches
        Debian's curl every time: dnsveil reads and drops the rest of the
        body instead of resetting the stream at once, which made curl 7.88
        drop the response (error 92) in most tries (before: 7, 2, 1 and 0
        of 20 seen)."""
        good = h.query_wire(WEB)
        tries = 20
        for mode in ("https-h2", "h2c"):
            tls, flag, _ = h.CURL_MODES[mode]
            cases = [
                ("PUT with a body", lambda: h.curl(
                    flag, "-X", "PUT", "-H", "content-type: application/dns-message",
                    "--data-binary", "@" + self.body_file(good), self.dv.url(tls)), 405),
                ("POST text/plain", lambda: h.curl_post(self.dv, mode, good,
                                                         content_type="text/plain"), 415),
                ("POST to an unknown path", lambda: h.curl_post(self.dv, mode, good,
                                                                 path="/other"), 404),
                ("POST of 70 KB", lambda: h.curl_post(self.dv, mode, b"\0" * 70000), 413),
            ]
            for what, run, want in cases:
                seen, last = 0, None
                for _ in range(tries):
                    r = run()
                    if r.status == want and r.rc == 0:
                        seen += 1
                    else:
                        last = r
                log("%s %s: %d of %d saw %d" % (mode, what, seen, tries, want))
                self.assertEqual(seen, tries, "%s %s: %d of %d saw %d; last miss: %r" % (
                    mode, what, seen, tries, want, last))

    def body_file(self, data):
        d = tempfile.mkdtemp(prefix="dv-curl-body-")
        self.addCleanup(shutil.rmtree, d, True)
        p = os.path.join(d, "body.bin")
        with open(p, "wb") as f:
            f.write(data)
        return p

    def _curl_error_cases(self, mode):
        """(description, curl result, expected status) for the cases curl
        can send in this mode."""
        tls, flag, _ = h.CURL_MODES[mode]
        url = self.dv.url(tls)
        good = h.query_wire(WEB)
        resp = h.make_query(WEB)
        resp.flags |= dns.flags.QR
        cases = [
            ("missing dns parameter", lambda: h.curl(flag, url), 400),
            ("empty dns parameter", lambda: h.curl(flag, url + "?dns="), 400),
            ("invalid base64url", lambda: h.curl(flag, url + "?dns=%21%21%21%24%24"), 400),
            ("dns parameter shorter than a header",
             lambda: h.curl(flag, url + "?dns=" + h.b64url(b"\0\1\2\3\4")), 400),
            ("POST body of 5 bytes", lambda: h.curl_post(self.dv, mode, b"hello"), 400),
            ("POST of a DNS response (QR set)",
             lambda: h.curl_post(self.dv, mode, resp.to_wire()), 400),
            ("unknown path", lambda: h.curl_get(self.dv, mode, good, path="/other"), 404),
            ("PUT", lambda: h.curl(flag, "-X", "PUT", url + "?dns=" + h.b64url(good)), 405),
            ("DELETE", lambda: h.curl(flag, "-X", "DELETE",
                                       url + "?dns=" + h.b64url(good)), 405),
            ("20 KB header", lambda: h.curl(flag, "-H", "x-big: " + "a" * 20000,
                                             url + "?dns=" + h.b64url(good)), 431),
        ]
        if flag == "--http1.1":
            cases += [
                ("POST body of 70000 bytes",
                 lambda: h.curl_post(self.dv, mode, b"\0" * 70000), 413),
                ("POST with content-type text/plain",
                 lambda: h.curl_post(self.dv, mode, good, content_type="text/plain"), 415),
            ]
        return cases

    def _run_curl_errors(self, mode):
        for what, fn, want in self._curl_error_cases(mode):
            r = fn()
            if want == 431 and r.status in (None, 0):
                # "431 or connection closed"
                self.assertNotEqual(r.rc, 0, "%s: %r" % (what, r))
                log("ok: %-13s %-36s -> connection closed (curl rc %d)" % (mode, what, r.rc))
            else:
                self.assertEqual(r.status, want, "%s over %s: %r" % (what, mode, r))
                self.assertTrue(r.body.startswith(str(want).encode()),
                                "%s over %s: the error body should start with the status: %r"
                                % (what, mode, r))
                self.assertTrue((r.header("content-type") or "").startswith("text/plain"),
                                "%s: %r" % (what, r))
                if want == 405:
                    allow = (r.header("allow") or "").replace(" ", "").upper().split(",")
                    self.assertEqual(sorted(allow), ["GET", "POST"], "405 allow: %r" % r)
                log("ok: %-13s %-36s -> %d %s" % (mode, what, r.status,
                                                  r.body.decode(errors="replace").strip()))
            self.assert_good(mode, what)

    def test_errors_https_h2(self):
        self._run_curl_errors("https-h2")

    def test_errors_https_http1(self):
        self._run_curl_errors("https-http1.1")

    def test_errors_h2c(self):
        self._run_curl_errors("h2c")

    def test_errors_http_http1(self):
        self._run_curl_errors("http-http1.1")

    def test_errors_h2_413_415(self):
        """413 and 415 over HTTP/2 (TLS and h2c) with python3-h2: the
        error answer, then RST_STREAM(NO_ERROR) when the body is still
        open, and the same connection answers a good request after."""
        good = h.query_wire(WEB)
        for tls in (True, False):
            proto = "h2" if tls else "h2c"
            c = h.H2Client(self.dv.https_port if tls else self.dv.http_port, tls=tls)
            self.addCleanup(c.close)
            # content-type text/plain
            sid = c.request("POST", wire=good, content_type="text/plain")
            st = c.wait([sid])[0]
            self.assertEqual(st.status, 415, "%s POST text/plain: %r" % (proto, st))
            self.assertTrue(st.body.startswith(b"415"), repr(st))
            log("ok: %-3s POST content-type text/plain -> 415 %s" % (proto, st.body.strip()))
            self.h2_good(c, "415")
            # a parameter on the right type is tolerated
            sid = c.request("POST", wire=good,
                            content_type="application/dns-message; charset=utf-8")
            st = c.wait([sid])[0]
            self.check_answer(st.status, st.headers, st.body, WEB, [WEB_ADDR], 0,
                              "content-type with a parameter: %r" % st)
            # 70000 bytes announced by content-length
            sid = c.request("POST", body=b"\0" * 100, end_stream=False,
                            headers=[("content-length", "70000")])
            st = c.wait([sid])[0]
            self.assertEqual(st.status, 413, "%s content-length 70000: %r" % (proto, st))
            self.assertTrue(st.body.startswith(b"413"), repr(st))
            log("ok: %-3s POST content-length: 70000 -> 413 (then RST_STREAM %s)" % (
                proto, st.reset))
            self.h2_good(c, "413 announced")
            # 70000 bytes without content-length, sent as flow control allows
            sid = c.request("POST", body=b"", end_stream=False)
            sent = c.send_body_flow(sid, b"\0" * 70000, timeout=h.scaled(5))
            st = c.wait([sid])[0]
            self.assertEqual(st.status, 413, "%s streamed 70000-byte body (%d sent): %r" % (
                proto, sent, st))
            log("ok: %-3s streamed body over 65535 bytes -> 413 after %d bytes sent" % (
                proto, sent))
            self.h2_good(c, "413 streamed")
            self.assertIsNone(c.goaway, "stream errors must not end the connection")
        self.assert_good("https-h2", "HTTP/2 413/415")

    def test_errors_505_raw(self):
        good = h.query_wire(WEB)
        for tls in (False, True):
            port = self.dv.https_port if tls else self.dv.http_port
            s = h.http_connect(port, tls)
            try:
                s.sendall(("GET /dns-query?dns=%s HTTP/3.7\r\nHost: dns.test\r\n\r\n" %
                           h.b64url(good)).encode())
                data, how, secs = h.read_until_closed(s, h.scaled(5))
            finally:
                s.close()
            st, hdrs, body = h.parse_http1(data)
            self.assertEqual(st, 505, "HTTP/3.7 request line over %s: got %r (%s)" % (
                "TLS" if tls else "plain", data[:300], how))
            self.assertTrue(body.startswith(b"505"), repr(data))
            self.assertEqual(how, "eof", "the connection should be closed after 505 (%s)" % how)
            log("ok: raw 'GET /dns-query HTTP/3.7' over %s -> 505 %s, connection closed" % (
                "TLS" if tls else "plain", body.strip()))
            self.assert_good("https-http1.1" if tls else "http-http1.1", "505")
        # a good raw HTTP/1.0 request still works and closes
        st, hdrs, body = h.http1_request(self.dv.http_port, False,
                                          h.get_request(good).replace(b"HTTP/1.1", b"HTTP/1.0"))
        self.check_answer(st, hdrs, body, WEB, [WEB_ADDR], 0, "raw HTTP/1.0 GET")

    # ------------------------------------------------------------- slow clients
    def test_slowloris_http1(self):
        """Headers one byte every 200 ms, over plain HTTP/1.1 and TLS at
        once: each cut off by tcp-read-timeout-ms (1000) while good clients
        are served."""
        good = h.query_wire(WEB)
        req = h.get_request(good, extra_headers=[("X-Slow", "a" * 200)], close=False)
        limit = h.scaled(READ_TIMEOUT_MS / 1000.0 * 2.5 + 1)
        conns = []
        for tls in (False, True):
            s = h.http_connect(self.dv.https_port if tls else self.dv.http_port, tls)
            self.addCleanup(s.close)
            conns.append({"tls": tls, "sock": s, "sent": 0, "how": None, "secs": None,
                          "got": b""})
        t0 = time.monotonic()
        rounds = 0
        # bounded: at most len(req) rounds and limit + 2 seconds
        while rounds < len(req) and time.monotonic() - t0 < limit + 2:
            rounds += 1
            open_ = [x for x in conns if x["how"] is None]
            if not open_:
                break
            for x in open_:
                try:
                    x["sock"].sendall(req[x["sent"]:x["sent"] + 1])
                    x["sent"] += 1
                except (OSError, ConnectionError):
                    x["how"], x["secs"] = "send failed", time.monotonic() - t0
            time.sleep(0.2)
            for x in open_:
                if x["how"] is None:
                    got, how, _ = h.read_until_closed(x["sock"], 0.001)
                    x["got"] += got
                    if how != "timeout":
                        x["how"], x["secs"] = how, time.monotonic() - t0
            if rounds % 5 == 0:
                # others are served meanwhile
                self.assert_good("https-http1.1", "(during a slow-loris)")
                self.assert_good("http-http1.1", "(during a slow-loris)")
        lines = []
        for x in conns:
            lines.append("%s: %d bytes sent in %.2fs, then %s %r" % (
                "TLS" if x["tls"] else "plain", x["sent"],
                x["secs"] if x["secs"] is not None else time.monotonic() - t0,
                x["how"] or "still open", x["got"][:80]))
        log("slow-loris (one header byte per 200 ms): " + "; ".join(lines))
        self.assert_good("https-http1.1", "slow-loris")
        self.assert_good("http-http1.1", "slow-loris")
        bad = [x for x in conns if x["how"] is None or x["secs"] > limit]
        if bad:
            self.fail("HTTP/1.1 slow-loris clients on the DoH listeners were not cut "
                      "off by limits.tcp-read-timeout-ms=%d within %.1fs:\n  %s" % (
                          READ_TIMEOUT_MS, limit, "\n  ".join(lines)))
        log("ok: slow-loris cut off over plain and TLS HTTP/1.1")

    def test_h2_unfinished_streams(self):
        """HTTP/2 requests that never finish, all at once over TLS and h2c:
        HEADERS of a POST without END_STREAM; a DATA frame announcing 100
        bytes of which 10 arrive; and (TLS) an unfinished POST on a
        connection kept busy with PINGs.  Each connection must be closed by
        a timeout (read or idle); a busy well-behaved connection is served
        all along."""
        good = h.query_wire(WEB)
        limit = h.scaled((READ_TIMEOUT_MS + IDLE_TIMEOUT_MS) / 1000.0 + 2)
        other = h.H2Client(self.dv.https_port, tls=True)
        self.addCleanup(other.close)
        hostile = []
        for variant, tls in (("open stream", True), ("open stream", False),
                             ("partial frame", True), ("partial frame", False),
                             ("open stream + PINGs", True)):
            c = h.H2Client(self.dv.https_port if tls else self.dv.http_port, tls=tls)
            self.addCleanup(c.close)
            c.pump(lambda c=c: c.remote_settings, h.scaled(2))
            if variant == "partial frame":
                c.conn.send_headers(1, [(":method", "POST"), (":scheme", "https"),
                                        (":authority", "dns.test"), (":path", h.PATH),
                                        ("content-type", "application/dns-message")])
                c.flush()
                c.sock.sendall(b"\x00\x00\x64\x00\x00\x00\x00\x00\x01" + b"\0" * 10)
            else:
                c.request("POST", body=good[:5], end_stream=False)
            hostile.append({"variant": variant, "tls": tls, "c": c, "t0": time.monotonic()})
        t0 = time.monotonic()
        pings = 0
        while time.monotonic() - t0 < limit and any(not x["c"].closed for x in hostile):
            for x in hostile:
                c = x["c"]
                if c.closed:
                    continue
                if x["variant"].endswith("PINGs"):
                    try:
                        c.conn.ping(b"%08d" % pings)
                        pings += 1
                        c.flush()
                    except Exception:  # noqa: BLE001 - connection gone
                        pass
                c.pump(None, 0.05)
                if c.closed and "secs" not in x:
                    x["secs"] = c.t_closed - x["t0"]
            self.h2_good(other, "(other connections hold unfinished HTTP/2 requests)")
            time.sleep(0.3)
        lines = []
        for x in hostile:
            c = x["c"]
            if c.closed and "secs" not in x:
                x["secs"] = c.t_closed - x["t0"]
            lines.append("%s over %s: %s%s, GOAWAY %s" % (
                x["variant"], "TLS" if x["tls"] else "h2c",
                "closed (%s) after %.2fs" % (c.closed, x["secs"]) if c.closed else
                "still open after %.1fs" % (time.monotonic() - x["t0"]),
                " (%d PINGs answered meanwhile)" % pings if x["variant"].endswith("PINGs")
                else "", c.goaway and (c.goaway.error_code, c.goaway.additional_data)))
        log("unfinished HTTP/2 requests (read timeout %d ms, idle %d ms):\n  %s" % (
            READ_TIMEOUT_MS, IDLE_TIMEOUT_MS, "\n  ".join(lines)))
        self.h2_good(other, "unfinished HTTP/2 requests were cut off")
        self.assert_good("https-h2", "unfinished HTTP/2 requests")
        self.assertTrue(all(x["c"].closed for x in hostile),
                        "HTTP/2 connections with a request that never finishes must be closed "
                        "by a timeout within %.1fs:\n  %s" % (limit, "\n  ".join(lines)))
        log("ok: every connection with an unfinished HTTP/2 request was closed; another "
            "connection was served all along")


# ====================================================================== streams, drain

class DohStreams(DohBase):

    slow = True

    def test_100_streams_out_of_order(self):
        """100 streams on one connection, the first for a name the slow
        authority answers after 1 s: all answered, the 99 fast ones before
        the slow one."""
        c = h.H2Client(self.dv.https_port, tls=True)
        self.addCleanup(c.close)
        c.pump(lambda: c.remote_settings, h.scaled(2))
        mcs = c.remote_settings.get(int(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS))
        log("dnsveil SETTINGS: %s" % c.remote_settings)
        self.assertEqual(mcs, 100, "SETTINGS_MAX_CONCURRENT_STREAMS: %s" % c.remote_settings)
        slow_name = h.unique_label("s") + ".slow.example.test"
        t0 = time.monotonic()
        slow = c.request("GET", wire=h.query_wire(slow_name))
        fast = {}
        for i in range(99):
            name = "h%d.example.test" % (300 + i)
            method = "GET" if i % 2 else "POST"
            fast[c.request(method, wire=h.query_wire(name, qid=i + 1))] = (name, i + 1)
        sts = c.wait([slow] + list(fast), h.scaled(10))
        for st in sts[1:]:
            name, qid = fast[st.sid]
            self.check_answer(st.status, st.headers, st.body, name,
                              [h.host_addr(int(name.split(".")[0][1:]))], qid,
                              "fast stream %d: %r" % (st.sid, st))
        s = sts[0]
        self.check_answer(s.status, s.headers, s.body, slow_name, [SLOW_ADDR], 0,
                          "slow stream: %r" % s)
        last_fast = max(st.t_end for st in sts[1:])
        log("100 streams: last fast answer after %.3fs, slow answer after %.3fs" % (
            last_fast - t0, s.t_end - t0))
        self.assertLess(last_fast, s.t_end, "the fast streams must not wait for the slow one")
        self.assertGreater(s.t_end - t0, 0.8, "the slow name was answered too early?")
        log("ok: 100 concurrent streams on one connection, all 200; the 99 fast ones "
            "answered before the slow first one")

    def test_goaway_on_sigterm(self):
        """SIGTERM: an open HTTP/2 connection gets GOAWAY(NO_ERROR), its
        stream in flight (a slow name) is still answered, an idle HTTP/1.1
        keep-alive connection is closed, and dnsveil exits 0."""
        d = self.dv
        c = h.H2Client(d.https_port, tls=True)
        self.addCleanup(c.close)
        c2 = h.H2Client(d.http_port, tls=False)
        self.addCleanup(c2.close)
        for x in (c, c2):
            self.h2_good(x, "connect")
        k = h.http_connect(d.https_port, True)
        self.addCleanup(k.close)
        k.sendall(h.get_request(h.query_wire(WEB), close=False))
        k.settimeout(h.scaled(5))
        first = b""
        while b"\r\n\r\n" not in first or h.parse_http1(first)[0] is None or \
                len(h.parse_http1(first)[2]) < int(h.parse_http1(first)[1].get(
                    "content-length", 0)):
            chunk = k.recv(4096)
            if not chunk:
                break
            first += chunk
            if len(first) > 65536:
                break
        self.assertEqual(h.parse_http1(first)[0], 200, repr(first))

        slow_name = h.unique_label("g") + ".slow.example.test"
        sid = c.request("GET", wire=h.query_wire(slow_name))
        time.sleep(0.3)  # dnsveil has it in flight (the authority waits 1 s)
        t0 = time.monotonic()
        d.proc.send_signal(15)
        c.pump(lambda: c.goaway is not None and c.streams[sid].done and c.closed,
               h.scaled(10))
        c2.pump(lambda: c2.goaway is not None and c2.closed, h.scaled(5))
        data, how, _ = h.read_until_closed(k, h.scaled(5))
        try:
            rc = d.proc.wait(timeout=h.scaled(10))
        except Exception:  # noqa: BLE001
            rc = None
        d.returncode = rc
        secs = time.monotonic() - t0
        st = c.streams[sid]
        def gas(x):
            return ["(code %d, last stream %d)" % (int(g.error_code), g.last_stream_id)
                    for g in x.goaways]
        log("after SIGTERM: h2 GOAWAYs %s, stream in flight %r, closed=%s; h2c GOAWAYs %s "
            "closed=%s; HTTP/1.1 idle keep-alive: %s %r; exit %s after %.2fs" % (
                gas(c), st, c.closed, gas(c2), c2.closed, how, data[:100], rc, secs))
        self.assertIsNotNone(c.goaway, "no GOAWAY on the open h2 connection after SIGTERM")
        self.assertEqual(int(c.goaway.error_code), 0, "GOAWAY error code: %r" % c.goaway)
        self.assertGreaterEqual(c.goaway.last_stream_id, sid, repr(c.goaway))
        self.check_answer(st.status, st.headers, st.body, slow_name, [SLOW_ADDR], 0,
                          "the stream in flight at SIGTERM: %r" % st)
        self.assertTrue(c.closed, "the h2 connection stayed open after the drain")
        self.assertIsNotNone(c2.goaway, "no GOAWAY on the idle h2c connection")
        self.assertEqual(int(c2.goaway.error_code), 0, repr(c2.goaway))
        self.assertTrue(c2.closed, "the h2c connection stayed open after the drain")
        self.assertIn(how, ("eof", "reset"), "idle HTTP/1.1 keep-alive connection: %s %r" % (
            how, data))
        self.assertEqual(rc, 0, "dnsveil exit code after SIGTERM:\n%s" % h.tail(d.stderr_path))
        log("ok: GOAWAY(NO_ERROR, last stream %d) on h2 and h2c, the slow stream answered, "
            "idle HTTP/1.1 closed, exit 0" % c.goaway.last_stream_id)


# ====================================================================== idle

class DohIdleConnections(DohBase):
    """Idle HTTP/2 connections over TLS that each asked one question cost
    little memory: no stream buffers are kept while a connection is idle."""

    N = int(500 / h.SCALE)

    def start_doh(self, extra_yaml="", limits=None, workers=None, name="doh"):
        return super().start_doh(extra_yaml, dict(limits or {}, **{
            "tcp-idle-timeout-ms": 300000, "tls-handshakes-per-ip": 0,
            "tcp-max-connections": 10000}), workers, name)

    def _open(self, n):
        conns = []
        try:
            for _ in range(n):
                c = h.H2Client(self.dv.https_port)
                conns.append(c)
                sid = c.request("POST", wire=h.query_wire("www.example.test"))
                st, = c.wait([sid])
                self.assertEqual(st.status, 200, repr(st))
        except BaseException:
            for c in conns:
                c.close()
            raise
        return conns

    def test_idle_h2_memory(self):
        n = self.N
        nofile = h.raise_nofile(65536)
        self.assertGreater(nofile, 2 * n + 200, "RLIMIT_NOFILE %d too low" % nofile)
        for c in self._open(50):      # warm up: code paths, TLS tables
            c.close()
        time.sleep(0.5)
        rss0 = h.rss_bytes(self.dv.pid)
        conns = self._open(n)
        try:
            time.sleep(1.0)
            per = (h.rss_bytes(self.dv.pid) - rss0) / float(n)
            log("%d idle DoH h2 connections, one POST each: %.0f bytes each" % (n, per))
            # about 32 KiB measured since a TLS 1.3 connection frees
            # wolfSSL's connection object after the handshake (43 KiB
            # before, 51 KiB while idle connections kept their stream
            # buffers and wolfSSL its handshake arrays)
            limit = 38 * 1024 * (4 if h.SANITIZE else 1)
            self.assertLess(per, limit, "RSS grew by %.0f bytes per idle DoH connection "
                            "(limit %d)" % (per, limit))
            # the idle connections are really held: the last one still answers
            sid = conns[-1].request("POST", wire=h.query_wire("www.example.test"))
            st, = conns[-1].wait([sid])
            self.assertEqual(st.status, 200, repr(st))
        finally:
            for c in conns:
                c.close()


# ====================================================================== keys in progress

PATHS_FORMS = ['doh:\n  paths: ["/dns-query/kids"]\n']
PROXY_FORMS = ['doh:\n  trusted-proxies: ["127.0.0.1"]\n',
               'doh:\n  trusted-proxies: ["127.0.0.1/32"]\n']


class DohConfigKeys(DohBase):

    def _need(self, name, forms):
        st, info = config_key_status(name, forms)
        self.assertNotEqual(st, "unknown", "dnsveil --check-config does not know %s: %s" % (
            name, info))
        self.assertEqual(st, "ok", "dnsveil --check-config refuses %s in every form tried:\n%s"
                         % (name, info))
        return info

    def request_lines(self, d, mark):
        """(path, client, forwarded) of the DoH request debug lines after
        offset `mark` of `d`'s stderr."""
        return [(m.group(1), m.group(2), bool(m.group(3))) for m in d.log_lines(
            r"doh: worker \d+: request from 127\.0\.0\.1:\d+: path (\S+), client (\S+)"
            r"( \(forwarded\))?$", start=mark)]

    def test_doh_paths(self):
        snippet = self._need("doh.paths", PATHS_FORMS)
        d = self.start_doh(extra_yaml=snippet + "log-level: debug\n", name="doh-paths")
        good = h.query_wire(WEB)
        for mode in h.CURL_MODES:
            for path in ("/dns-query", "/dns-query/kids"):
                for method in ("GET", "POST"):
                    fn = h.curl_get if method == "GET" else h.curl_post
                    mark = len(d.stderr_text())
                    r = fn(d, mode, good, path=path)
                    self.check_curl_answer(r, mode, WEB, [WEB_ADDR], 0, "%s %s %s" % (
                        mode, method, path))
                    # the path the query came in on, in its debug line
                    self.assertEqual(self.request_lines(d, mark), [(path, "127.0.0.1", False)],
                                     "%s %s %s: the request's debug line" % (mode, method, path))
            # a served path + "/" + one DNS label carries a client ID (the
            # policy's, README "Policy"): answered, the ID in the line
            for path in ("/dns-query/kid", "/dns-query/kids/x"):
                mark = len(d.stderr_text())
                r = h.curl_get(d, mode, good, path=path)
                self.check_curl_answer(r, mode, WEB, [WEB_ADDR], 0, "%s GET %s" % (mode, path))
                self.assertEqual(self.request_lines(d, mark), [(path, "127.0.0.1", False)],
                                 "%s GET %s: the request's debug line" % (mode, path))
            for path in ("/other", "/dns-query/", "/dns-queryx", "/dns-query/kids/x/y",
                         "/dns-query/not_a_label", "/dns-query/-x"):
                mark = len(d.stderr_text())
                r = h.curl_get(d, mode, good, path=path)
                self.assertEqual(r.status, 404, "%s GET %s: %r" % (mode, path, r))
                self.assertEqual(self.request_lines(d, mark), [],
                                 "%s GET %s: no query, no request line" % (mode, path))
            log("ok: %s: /dns-query and /dns-query/kids answered, with a client ID too; "
                "/other and near misses 404" % mode)

    def test_doh_trusted_proxies(self):
        snippet = self._need("doh.trusted-proxies", PROXY_FORMS)
        trusted = self.start_doh(extra_yaml=snippet + "log-level: debug\n", name="doh-proxied")
        untrusted = self.start_doh(extra_yaml="log-level: debug\n", name="doh-unproxied")
        good = h.query_wire(WEB)
        # header, value, the client a trusted proxy's header names (None:
        # none, the peer's own address counts)
        headers = [("x-forwarded-for", "192.0.2.55", "192.0.2.55"),
                   ("x-forwarded-for", "198.51.100.7, 192.0.2.55", "192.0.2.55"),
                   ("forwarded", "for=192.0.2.55", "192.0.2.55"),
                   ("forwarded", 'for="[2001:db8::55]"', "2001:db8::55"),
                   ("x-forwarded-for", "not-an-address", None)]
        for d, what in ((trusted, "trusted 127.0.0.1"), (self.dv, "no trusted proxies"),
                        (untrusted, "no trusted proxies, debug log")):
            for mode in h.CURL_MODES:
                for k, v, client in headers:
                    mark = len(d.stderr_text())
                    r = h.curl_get(d, mode, good, extra=("-H", "%s: %s" % (k, v)))
                    self.check_curl_answer(r, mode, WEB, [WEB_ADDR], 0, "%s, %s, %s: %s" % (
                        what, mode, k, v))
                    if d is self.dv:
                        continue  # (its log level is info)
                    want = (client, True) if client and d is trusted else ("127.0.0.1", False)
                    self.assertEqual(self.request_lines(d, mark), [("/dns-query",) + want],
                                     "%s, %s, %s: %s: the client the request counts for" % (
                                         what, mode, k, v))
                # both headers, naming different addresses
                mark = len(d.stderr_text())
                r = h.curl_post(d, mode, good, extra=("-H", "x-forwarded-for: 192.0.2.55",
                                                       "-H", "forwarded: for=192.0.2.66"))
                self.check_curl_answer(r, mode, WEB, [WEB_ADDR], 0, "%s, %s, conflicting "
                                       "X-Forwarded-For and Forwarded" % (what, mode))
                if d is not self.dv:
                    self.assertEqual(self.request_lines(d, mark),
                                     [("/dns-query", "127.0.0.1", False)],
                                     "%s, %s, conflicting headers: none is believed" % (
                                         what, mode))
            self.assertTrue(d.alive())
            log("ok: %s: X-Forwarded-For / Forwarded requests answered over every protocol"
                % what)


if __name__ == "__main__":
    h.main()
