#!/usr/bin/python3
"""The admin listener (admin.listen / --admin): /metrics, /healthz, /readyz.

- /metrics passes `promtool check metrics` with nothing to say, every
  family it exposes is in README's list (and the other way round), and its
  counters follow known traffic exactly: queries and answers by transport
  and rcode, cache hits and misses, the latency histogram by source, the
  EDNS size histogram, DoT connections and handshakes;
- a real Prometheus server (Debian's `prometheus`, its own config and
  storage in the temp dir, scraping every second) reads it, and the cache
  hit ratio it computes through its HTTP API is the traffic's;
- /readyz is 200 while the upstream is up, 503 once the only upstream is
  killed, 200 again when it is back; 503 at once on SIGTERM while a slow
  query is still in flight (which is still answered); /healthz is 200;
- addresses outside admin.allow get 403; unknown paths 404, other methods
  405; garbage 400, an oversized head 431, and slow or silent clients are
  closed at admin.timeout-ms while others are served;
- admin URLs other than http://ADDRESS:PORT are refused by --check-config.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
SOURCE_DIR = os.environ.get("DV_SOURCE_DIR",
                            os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def admin_yaml(port, allow=None, **keys):
    y = "admin:\n  listen: [\"http://127.0.0.1:%d\"]\n" % port
    if allow is not None:
        y += "  allow: [%s]\n" % ", ".join('"%s"' % a for a in allow)
    for k, v in keys.items():
        y += "  %s: %s\n" % (k.replace("_", "-"), v)
    return y


def get(port, path, method="GET", interface=None, timeout=None):
    """curl, as an operator or a kubelet would."""
    args = ["-X", method] if method not in ("GET", "HEAD") else (
        ["-I"] if method == "HEAD" else [])
    if interface:
        args += ["--interface", interface]
    return h.curl(*args, "http://127.0.0.1:%d%s" % (port, path), timeout=timeout)


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} and {family: type}."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, "not an exposition line: %r" % line
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        samples[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return samples, types


def value(samples, name, **labels):
    """The sum of `name` over the series whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def scrape(port):
    r = get(port, "/metrics")
    assert r.status == 200, r
    return parse_metrics(r.body.decode())[0]


class Prometheus:
    """A Prometheus server of our own on a free loopback port, scraping
    `target` every second, its storage in a temp dir."""

    def __init__(self, target):
        self.dir = tempfile.mkdtemp(prefix="dv-prometheus-")
        self.port = h.free_port()
        conf = os.path.join(self.dir, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: dnsveil\n"
                    "    static_configs:\n      - targets: [\"%s\"]\n" % target)
        self.log = os.path.join(self.dir, "prometheus.log")
        self.args = [PROMETHEUS, "--config.file=" + conf,
                     "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
                     "--web.listen-address=127.0.0.1:%d" % self.port,
                     "--web.console.templates=" + self.dir,
                     "--web.console.libraries=" + self.dir]
        self.proc = None

    def start(self):
        f = open(self.log, "ab")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=f,
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        f.close()
        log("started prometheus pid %d on 127.0.0.1:%d" % (self.proc.pid, self.port))
        h.wait_for(self.ready, h.scaled(30), interval=0.2, what="prometheus /-/ready")
        return self

    def ready(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port,
                                    timeout=2) as r:
            return r.status == 200

    def query(self, expr):
        """The value of an instant query with one result (None if empty)."""
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (
            self.port, urllib.parse.urlencode({"query": expr}))
        with urllib.request.urlopen(url, timeout=5) as r:
            doc = json.load(r)
        assert doc["status"] == "success", doc
        res = doc["data"]["result"]
        if not res:
            return None
        assert len(res) == 1, res
        return float(res[0]["value"][1])

    def stop(self):
        h.terminate(self.proc)

    def cleanup(self, keep=False):
        self.stop()
        if not keep and not h.KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            log("kept prometheus dir %s" % self.dir)


def udp_query(port, name, rdtype="A", payload=1232, use_edns=True):
    q = dns.message.make_query(name, rdtype, use_edns=0 if use_edns else False,
                               payload=payload)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=h.scaled(3))


class AdminBase(h.IntegrationTest):
    def setUp(self):
        super().setUp()
        self._proms = []
        self.addCleanup(lambda: [p.cleanup(keep=self._failure_count() >
                                           self._failures_at_start) for p in self._proms])

    def start_dv(self, ub, admin_port=None, listen=None, workers=2, allow=None,
                 config=None, **admin_keys):
        self.admin_port = admin_port or h.free_port()
        dv = h.Dnsveil(upstream=[ub], listen=listen, workers=workers,
                       config=config or h.pool_config(**{"reconnect-max-ms": 300}),
                       extra_yaml=admin_yaml(self.admin_port, allow, **admin_keys),
                       name="admin")
        self._dnsveils.append(dv)
        return dv.start()


class AdminMetrics(AdminBase):
    def test_metrics_follow_traffic_promtool_and_prometheus(self):
        ub = self.start_unbound()
        dv = self.start_dv(ub, listen=["dns", "tls"], config=h.dot_config())
        port = self.admin_port

        s0 = scrape(port)
        # 20 names asked once (misses), then 4 more times each (hits),
        # 5 names that do not exist (NXDOMAIN, misses), and 3 queries
        # without EDNS (hits)
        names = ["h%d.example.test" % i for i in range(100, 120)]
        for n in names:
            self.assertEqual(udp_query(dv.port, n).rcode(), dns.rcode.NOERROR)
        for _ in range(4):
            for n in names:
                self.assertEqual(udp_query(dv.port, n, payload=4096).rcode(),
                                 dns.rcode.NOERROR)
        for i in range(5):
            self.assertEqual(udp_query(dv.port, "nx%d.example.test" % i).rcode(),
                             dns.rcode.NXDOMAIN)
        for n in names[:3]:
            udp_query(dv.port, n, use_edns=False)
        su = scrape(port)
        # DoT: 3 connections (kdig, one query each, names cached by now)
        for n in names[:3]:
            r = h.kdig_tls(dv.tls_port, [(n, "A")])
            self.assertEqual(r.rc, 0, r.stderr)
        s1 = scrape(port)

        def d(name, after=su, **labels):
            return value(after, name, **labels) - value(s0, name, **labels)

        self.assertEqual(d("dnsveil_queries_total", transport="udp"), 108)
        self.assertEqual(d("dnsveil_answers_total", transport="udp", rcode="NOERROR"), 103)
        self.assertEqual(d("dnsveil_answers_total", transport="udp", rcode="NXDOMAIN"), 5)
        self.assertEqual(d("dnsveil_answers_total", transport="udp"), 108)
        self.assertEqual(d("dnsveil_cache_misses_total"), 25)
        self.assertEqual(d("dnsveil_cache_hits_total"), 83)
        self.assertEqual(d("dnsveil_answer_latency_seconds_count", transport="udp",
                           source="cache"), 83)
        self.assertEqual(d("dnsveil_answer_latency_seconds_count", transport="udp",
                           source="upstream"), 25)
        self.assertEqual(d("dnsveil_edns_udp_size_bytes_bucket", le="1024"), 0)
        self.assertEqual(d("dnsveil_edns_udp_size_bytes_bucket", le="1232"), 25)
        self.assertEqual(d("dnsveil_edns_udp_size_bytes_bucket", le="4096"), 105)
        self.assertEqual(d("dnsveil_edns_udp_size_bytes_bucket", le="+Inf"), 105)
        self.assertEqual(d("dnsveil_edns_udp_size_bytes_sum"), 25 * 1232 + 80 * 4096)
        self.assertEqual(d("dnsveil_queries_without_edns_total"), 3)
        self.assertEqual(d("dnsveil_queries_total", after=s1, transport="tls"), 3)
        self.assertEqual(d("dnsveil_answers_total", after=s1, transport="tls",
                           rcode="NOERROR"), 3)
        self.assertEqual(d("dnsveil_cache_hits_total", after=s1), 86)
        self.assertEqual(d("dnsveil_connections_accepted_total", after=s1, transport="tls"), 3)
        self.assertEqual(d("dnsveil_handshakes_total", after=s1, protocol="tls"), 3)
        # kdig has closed its connections; dnsveil frees them when it reads EOF
        h.wait_for(lambda: value(scrape(port), "dnsveil_connections_open", transport="tls") == 0,
                   h.scaled(5), what="the DoT connections to be closed")
        self.assertEqual(value(s1, "dnsveil_build_info"), 1)
        # a cache hit is answered well under 10 ms even here
        fast = value(s1, "dnsveil_answer_latency_seconds_bucket", transport="udp",
                     source="cache", le="0.01")
        self.assertGreaterEqual(fast, 0.9 * value(
            s1, "dnsveil_answer_latency_seconds_count", transport="udp", source="cache"))
        self.assertGreater(value(s1, "dnsveil_server_answers_total", upstream=ub.url("tcp")), 0)
        self.assertGreater(value(s1, "dnsveil_server_latency_seconds_count",
                                 upstream=ub.url("tcp")), 0)
        self.assertEqual(value(s1, "dnsveil_server_state", upstream=ub.url("tcp"),
                               state="up"), 1)
        log("ok: /metrics counts the traffic exactly (108 UDP queries, 25 misses, "
            "83 hits, 5 NXDOMAIN, EDNS sizes, 3 DoT connections and handshakes)")

        # promtool: the exposition is valid and nothing to warn about
        text = get(port, "/metrics").body.decode()
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout.strip(), r.stderr.strip()), (0, "", ""), r)
        log("ok: promtool check metrics: no error, no warning (%d lines)" %
            len(text.splitlines()))

        # README lists exactly the families exposed
        _, types = parse_metrics(text)
        with open(os.path.join(SOURCE_DIR, "README.md")) as f:
            readme = f.read()
        sec = readme.split("## Admin listener and metrics", 1)[1].split("\n## ", 1)[0]
        listed = set(re.findall(r"^\| `(dnsveil_[a-z0-9_]+)`", sec, re.M))
        self.assertEqual(set(types) - listed, set(), "exposed but not in README")
        self.assertEqual(listed - set(types), set(), "in README but not exposed")
        log("ok: README lists the %d metric families exposed" % len(types))

        # a real Prometheus scrapes it; its cache hit ratio is the traffic's
        prom = Prometheus("127.0.0.1:%d" % port)
        self._proms.append(prom)
        prom.start()
        hits = value(s1, "dnsveil_cache_hits_total")
        misses = value(s1, "dnsveil_cache_misses_total")
        h.wait_for(lambda: prom.query("sum(dnsveil_cache_hits_total)") == hits,
                   h.scaled(30), interval=0.5, what="prometheus to scrape dnsveil")
        ratio = prom.query("sum(dnsveil_cache_hits_total) / (sum(dnsveil_cache_hits_total)"
                           " + sum(dnsveil_cache_misses_total))")
        self.assertAlmostEqual(ratio, hits / (hits + misses), places=9)
        nx = prom.query('sum(dnsveil_answers_total{rcode="NXDOMAIN"})')
        self.assertEqual(nx, 5)
        up = prom.query('up{job="dnsveil"}')
        self.assertEqual(up, 1)
        p50 = prom.query('histogram_quantile(0.5, sum by (le) '
                         '(dnsveil_answer_latency_seconds_bucket{source="cache"}))')
        self.assertLess(p50, 0.01)
        log("ok: prometheus scraped dnsveil: hit ratio %.4f (%d hits, %d misses), "
            "5 NXDOMAIN, cache p50 %.6f s" % (ratio, hits, misses, p50))


class AdminProbes(AdminBase):
    def test_readyz_follows_the_upstream(self):
        ub = self.start_unbound()
        dv = self.start_dv(ub, workers=1)
        port = self.admin_port
        r = get(port, "/readyz")
        self.assertEqual((r.status, r.body), (200, b"ready\n"), r)
        r = get(port, "/healthz")
        self.assertEqual((r.status, r.body), (200, b"ok\n"), r)
        ub.kill()

        def not_ready():
            try:  # traffic makes dnsveil notice; probes keep it down
                udp_query(dv.port, "x%d.whoami.example.test" % time.monotonic_ns(), "TXT")
            except Exception:  # noqa: BLE001 - a SERVFAIL or a timeout is expected
                pass
            return get(port, "/readyz").status == 503
        h.wait_for(not_ready, h.scaled(15), interval=0.2, what="/readyz 503 after the kill")
        r = get(port, "/readyz")
        self.assertEqual(r.body, b"not ready: no usable upstream (every server is down)\n")
        self.assertEqual(get(port, "/healthz").status, 200)
        log("ok: /readyz 503 with the only upstream killed (%s)" % r.body.decode().strip())
        ub.start()
        h.wait_for(lambda: get(port, "/readyz").status == 200, h.scaled(15), interval=0.2,
                   what="/readyz 200 after the restart (probes)")
        log("ok: /readyz 200 again once the upstream is back")

    def test_readyz_fails_at_once_on_sigterm(self):
        slow = self.start_slow(delay=1.0)
        ub = self.start_unbound(slow=slow, log_queries=False)
        dv = self.start_dv(ub, workers=1)
        port = self.admin_port
        self.assertEqual(get(port, "/readyz").status, 200)
        out = {}
        t = threading.Thread(target=lambda: out.setdefault(
            "r", udp_query(dv.port, "d1.%s" % h.SLOW_ZONE)))
        t.start()
        h.wait_for(lambda: slow.count > 0, h.scaled(5), what="the slow query at the authority")
        t0 = time.monotonic()
        dv.proc.send_signal(signal.SIGTERM)
        r = h.wait_for(lambda: (lambda x: x if x.status == 503 else None)(get(port, "/readyz")),
                       h.scaled(2), interval=0.02, what="/readyz 503 after SIGTERM")
        took = time.monotonic() - t0
        self.assertEqual(r.body, b"not ready: draining\n")
        self.assertIsNone(dv.proc.poll(), "dnsveil exited before its query was answered")
        t.join(h.scaled(10))
        self.assertEqual(out["r"].rcode(), dns.rcode.NOERROR)
        dv.returncode = dv.proc.wait(timeout=h.scaled(10))
        self.assertEqual(dv.returncode, 0)
        log("ok: /readyz 503 'draining' %.0f ms after SIGTERM, the slow query still "
            "answered, exit 0" % (took * 1000))


class AdminInput(AdminBase):
    def test_allow_list(self):
        ub = self.start_unbound()
        self.start_dv(ub, allow=["127.0.0.2"], workers=1)
        port = self.admin_port
        r = get(port, "/metrics")
        self.assertEqual(r.status, 403, r)
        r = get(port, "/metrics", interface="127.0.0.2")
        self.assertEqual(r.status, 200, r)
        s = parse_metrics(r.body.decode())[0]
        self.assertEqual(value(s, "dnsveil_admin_refused_total"), 1)
        log("ok: admin.allow [127.0.0.2]: 403 from 127.0.0.1, 200 from 127.0.0.2")

    def test_paths_methods_and_bad_input(self):
        ub = self.start_unbound()
        self.start_dv(ub, workers=1, max_connections=4, timeout_ms=1000)
        port = self.admin_port
        self.assertEqual(get(port, "/nope").status, 404)
        r = get(port, "/metrics", method="POST")
        self.assertEqual((r.status, r.headers.get("allow")), (405, "GET, HEAD"), r)
        r = get(port, "/metrics", method="HEAD")  # curl -I: the head is the body
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(b"dnsveil_", r.body)
        self.assertTrue(r.headers["content-type"].startswith("text/plain; version=0.0.4"), r)
        self.assertEqual(get(port, "/readyz?verbose=1").status, 200)

        def raw(data, timeout=None):
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout or h.scaled(5))
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                buf = b""
                while True:
                    b = s.recv(65536)
                    if not b:
                        return buf
                    buf += b
            finally:
                s.close()
        self.assertTrue(raw(b"\x16\x03\x01\x00\xa5garbage\r\n\r\n").startswith(
            b"HTTP/1.1 400 "))
        self.assertTrue(raw(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 5000 + b"\r\n\r\n")
                        .startswith(b"HTTP/1.1 431 "))
        self.assertTrue(raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            b"HTTP/1.1 200 "))
        log("ok: 404, 405 (Allow: GET, HEAD), HEAD, query string, 400 garbage, 431 oversized")

        # four slow clients take every connection (max-connections 4): one
        # byte a time, or nothing; each is closed at timeout-ms, and a
        # client waiting in the backlog is served after that
        slow = []
        for i in range(4):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /metr" if i % 2 else b"")
            slow.append(s)
        t0 = time.monotonic()
        r = get(port, "/healthz", timeout=h.scaled(10))
        waited = time.monotonic() - t0
        self.assertEqual(r.status, 200, r)
        for s in slow:
            s.settimeout(h.scaled(5))
            try:
                self.assertEqual(s.recv(100), b"")
            except ConnectionResetError:
                pass
            s.close()
        self.assertLess(waited, h.scaled(5))
        s = scrape(port)
        self.assertGreaterEqual(value(s, "dnsveil_admin_bad_requests_total"), 2 + 4)
        log("ok: 4 slow clients closed at admin.timeout-ms, the 5th served after %.2f s" %
            waited)

    def test_cli_flag_and_check_config(self):
        ub = self.start_unbound()
        port = h.free_port()
        dv = h.Dnsveil(upstream=[ub], workers=1, name="admin-cli",
                       extra_args=["--admin", "http://127.0.0.1:%d" % port])
        self._dnsveils.append(dv)
        dv.start()
        self.assertEqual(get(port, "/readyz").status, 200)
        for bad, why in (("https://127.0.0.1:9153", "plain HTTP"),
                         ("http://127.0.0.1:9153/metrics", "takes no path"),
                         ("http://localhost:9153", "")):
            r = h.run_dnsveil(["--listen", "udp://127.0.0.1:53", "--upstream",
                               "udp://127.0.0.1:53", "--admin", bad, "--check-config"])
            self.assertEqual(r.returncode, 1, r)
            self.assertIn("--admin", r.stderr)
            self.assertIn(why, r.stderr)
        log("ok: --admin serves; https://, a path and a host name are refused")


if __name__ == "__main__":
    h.main()
