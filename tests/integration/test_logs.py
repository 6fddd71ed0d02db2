#!/usr/bin/python3
"""Logs (README "Logs"): log.format json, the query log and dnstap.

- log.format: json: every stderr line is one JSON object (Python's json
  parses it) whose first keys are ts, level, msg; a debug line carrying a
  query name with a quote, a backslash and control bytes stays one valid
  line;
- the query log (log.queries: all, json, to log.query-file) has a line per
  answer over UDP, DoT (client ID from the TLS SNI) and DoH (client ID from
  the path) with the client address and port, ID, group, name, type,
  rcode, source (upstream, then cache, policy for a blocked name), the
  upstream that answered, the latency and the policy's decision; the text
  format has the same fields;
- log.queries: errors logs only answers other than NOERROR and NXDOMAIN;
- log.query-sample: N logs 1 in N answers per worker;
- SIGHUP reopens log.query-file (logrotate moved it away);
- a stalled query-log reader (a FIFO nobody reads) never stops answers:
  every query is answered, the entries that did not fit are counted
  (querylog_dropped, in the stats line and as
  dnsveil_querylog_dropped_total on /metrics), and entries + drops are
  exactly the answers;
- dnstap to fstrm_capture's Unix socket, read back by dnstap-ldns (both
  Debian's, written by others): a CLIENT_QUERY and a CLIENT_RESPONSE for
  each query, with the names, types, client address and transport (UDP,
  TCP; DoT/DoH/DoQ checked by decoding the frames' socket_protocol with
  Debian's dnstap -j); dnstap.file likewise; a collector started after
  dnsveil gets the frames queued before it connected and after;
- a collector that accepts the connection and never reads: queries are
  all answered and the frames that did not fit are counted
  (dnstap_dropped).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402
from dvtest.doh import b64url, curl  # noqa: E402

import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

h.ensure_dev_certs()

FSTRM_CAPTURE = "/usr/bin/fstrm_capture"
DNSTAP_LDNS = "/usr/bin/dnstap-ldns"
DNSTAP_GO = "/usr/bin/dnstap"  # Debian's golang-github-dnstap-golang-dnstap-cli

# the harness's readiness probes (one per listener) are not the test's
PROBE = "example.test."

QLOG_KEYS = ["ts", "level", "msg", "transport", "client", "port", "id", "group",
             "name", "type", "rcode", "source", "upstream", "latency_ms", "policy", "list"]

POLICY = """lists:
  ads: { source: %s, format: domains }
groups:
  default: { block: [ads] }
  kids: { block: [ads], action: refused }
clients:
  - { id: "kid-*", group: kids }
policy:
  server-names: [dns.test]
"""


def read_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8").splitlines()
    except FileNotFoundError:
        return []


def delta(dv, before):
    """The counters of dnsveil's stats line since `before`."""
    st = dv.stats()
    return {k: st[k] - before[k] for k in before if isinstance(before[k], int)}


class Logs(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        self.tmp = tempfile.mkdtemp(prefix="dv-logs-")

    def tearDown(self):
        super().tearDown()
        subprocess.run(["rm", "-rf", self.tmp])

    def start(self, log_cfg=None, listen=("dns",), extra_yaml="", workers=1, name="logs", **sections):
        cfg = h.doh_config(**sections)
        if log_cfg is not None:
            cfg["log"] = log_cfg
        dv = h.Dnsveil(listen=list(listen), upstream=[self.ub], config=cfg, workers=workers,
                       extra_yaml=extra_yaml, name=name)
        self._dnsveils.append(dv)
        dv.start()
        return dv

    def policy_yaml(self):
        path = os.path.join(self.tmp, "ads.txt")
        with open(path, "w") as f:
            f.write("h9.example.test\n")
        return POLICY % path

    def udp(self, dv, name, rdtype="A"):
        return h.udp_query(dv.port, name, rdtype)

    def wait_qlog(self, path, n, what):
        """The query-log lines of `path`, parsed, once there are `n` besides
        the readiness probes'."""
        def recs():
            r = [json.loads(x) for x in read_lines(path)]
            r = [x for x in r if x["name"] != PROBE]
            return r if len(r) >= n else None
        return h.wait_for(recs, h.scaled(10), what=what)

    def delta(self, dv, before):
        return delta(dv, before)

    # ---- log.format

    def test_json_format(self):
        """Every stderr line is a JSON object with ts, level, msg first,
        the query log's lines on stderr too: a name with a quote, a
        backslash, control bytes and a byte that is not UTF-8 comes out
        as dnspython writes it, and the policy's debug line naming it
        stays valid JSON."""
        dv = self.start(log_cfg={"format": "json", "level": "debug", "queries": "all"},
                        extra_yaml=self.policy_yaml())
        odd = dns.name.Name([b'q"uo\\te\x01\x7f\xff', b"example", b"test", b""])
        q = dns.message.make_query(odd, "A")
        r = dns.query.udp(q, "127.0.0.1", port=dv.port, timeout=h.scaled(3))
        self.assertEqual(r.rcode(), dns.rcode.NXDOMAIN)
        dv.wait_log(r'"msg":"query".*"NXDOMAIN"')
        dv.stop()
        text = dv.stderr_text()
        lines = [x for x in text.splitlines() if x.strip() and not x.startswith("dnsveil-stats ")]
        self.assertGreater(len(lines), 5)
        levels = set()
        names = []
        policy_line = None
        for line in lines:
            obj = json.loads(line)  # fails the test on a bad line
            self.assertEqual(list(obj)[:3], ["ts", "level", "msg"], line)
            self.assertRegex(obj["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3,6}Z$")
            levels.add(obj["level"])
            if obj["msg"] == "query":
                names.append(obj["name"])
            elif "policy: client" in obj["msg"] and "\x01" in obj["msg"]:
                policy_line = obj["msg"]
        self.assertTrue({"info", "debug"} <= levels, levels)
        self.assertIn(odd.to_text(), names)
        self.assertIsNotNone(policy_line, text)
        log("ok: %d stderr lines, each one JSON object (levels %s); the odd name: %s"
            % (len(lines), sorted(levels), odd.to_text()))

    # ---- the query log

    def test_query_log_fields(self):
        """UDP, DoT with the client ID in the SNI, DoH with the ID in the
        path: one JSON line each, with identity, source and upstream."""
        qfile = os.path.join(self.tmp, "queries.log")
        dv = self.start(log_cfg={"format": "json", "queries": "all", "query-file": qfile},
                        listen=("dns", "tls", "https"), extra_yaml=self.policy_yaml())
        st0 = dv.stats()
        self.assertEqual(self.udp(dv, "h1.example.test").rcode(), dns.rcode.NOERROR)
        self.assertEqual(self.udp(dv, "h1.example.test").rcode(), dns.rcode.NOERROR)
        self.assertEqual(self.udp(dv, "h9.example.test").rcode(), dns.rcode.NXDOMAIN)
        t = h.kdig_tls(dv.tls_port, [("h2.example.test", "AAAA")], "+tls-sni=kid-1.dns.test")
        self.assertEqual(t.rcode, 0, t)
        wire = h.make_query("h3.example.test", "TXT").to_wire()
        r = curl("--http2", "https://127.0.0.1:%d/dns-query/kid-2?dns=%s" % (dv.https_port, b64url(wire)))
        self.assertEqual(r.status, 200, r)
        recs = self.wait_qlog(qfile, 5, "5 query-log lines")
        for rec in recs:
            self.assertEqual(list(rec), QLOG_KEYS, rec)
            self.assertEqual(rec["msg"], "query")
            self.assertEqual(rec["client"], "127.0.0.1")
            self.assertGreater(rec["port"], 0)
            self.assertGreaterEqual(rec["latency_ms"], 0)
        by = [(r["transport"], r["name"], r["type"]) for r in recs]
        self.assertEqual(by, [("udp", "h1.example.test.", "A"), ("udp", "h1.example.test.", "A"),
                              ("udp", "h9.example.test.", "A"), ("tls", "h2.example.test.", "AAAA"),
                              ("https", "h3.example.test.", "TXT")])
        first, hit, blocked, dot, doh = recs
        self.assertEqual((first["rcode"], first["source"], first["upstream"], first["id"],
                          first["group"], first["policy"]),
                         ("NOERROR", "upstream", self.ub.url("tcp"), None, "default", "pass"))
        self.assertEqual((hit["source"], hit["upstream"]), ("cache", None))
        self.assertEqual((blocked["rcode"], blocked["source"], blocked["policy"], blocked["list"]),
                         ("NXDOMAIN", "policy", "blocked", "ads"))
        self.assertIsNone(first["list"])
        self.assertEqual((dot["id"], dot["group"], dot["rcode"], dot["source"]),
                         ("kid-1", "kids", "NOERROR", "upstream"))
        self.assertEqual((doh["id"], doh["group"], doh["rcode"]), ("kid-2", "kids", "NOERROR"))
        self.assertLess(hit["latency_ms"], first["latency_ms"] + 1000)
        st = self.delta(dv, st0)
        self.assertEqual(st["querylog_entries"], 5)
        self.assertEqual(st["querylog_dropped"], 0)
        log("ok: query log: %d JSON lines, e.g. %s" % (len(recs), json.dumps(dot)))

    def test_reopen_on_sighup(self):
        """logrotate's way: the file is moved away, SIGHUP, and the next
        lines go to a new file of the configured name."""
        qfile = os.path.join(self.tmp, "queries.log")
        dv = self.start(log_cfg={"format": "json", "queries": "all", "query-file": qfile})
        self.assertEqual(self.udp(dv, "h1.example.test").rcode(), dns.rcode.NOERROR)
        self.wait_qlog(qfile, 1, "h1's line")
        os.rename(qfile, qfile + ".1")
        dv.proc.send_signal(signal.SIGHUP)
        dv.wait_log(r"query log: '%s' reopened" % re.escape(qfile))
        self.assertEqual(self.udp(dv, "h2.example.test").rcode(), dns.rcode.NOERROR)
        new = self.wait_qlog(qfile, 1, "h2's line in the new file")
        self.assertEqual([r["name"] for r in new], ["h2.example.test."])
        old = [json.loads(x)["name"] for x in read_lines(qfile + ".1")]
        self.assertIn("h1.example.test.", old)
        self.assertNotIn("h2.example.test.", old)
        log("ok: SIGHUP reopened the query log: old file %d lines, new file %d" % (len(old), len(new)))

    def test_query_log_text_stderr(self):
        """The text format, to stderr beside the other lines."""
        dv = self.start(log_cfg={"queries": "all"})
        self.assertEqual(self.udp(dv, "h4.example.test", "MX").rcode(), dns.rcode.NOERROR)
        m = dv.wait_log(r"(?m)^\S+Z query udp 127\.0\.0\.1#(\d+) h4\.example\.test\. MX NOERROR upstream "
                        r"(\d+\.\d{3})ms id=- group=- policy=- upstream=(\S+)$")
        self.assertEqual(m.group(3), self.ub.url("tcp"))
        log("ok: text query line: %s" % m.group(0))

    def test_errors_only(self):
        """log.queries: errors: SERVFAIL, FORMERR and REFUSED are logged,
        NOERROR and NXDOMAIN are not."""
        qfile = os.path.join(self.tmp, "errors.log")
        dv = self.start(log_cfg={"format": "json", "queries": "errors", "query-file": qfile},
                        extra_yaml=self.policy_yaml().replace("default: { block: [ads] }",
                                                              "default: { block: [ads], action: refused }"),
                        # the upstream refuses outside.example.org; retried
                        # (not kept as final), it ends in SERVFAIL
                        pool={"refused-is-final": False})
        st0 = dv.stats()
        self.assertEqual(self.udp(dv, "h1.example.test").rcode(), dns.rcode.NOERROR)
        self.assertEqual(self.udp(dv, "nx.nowhere.example.test").rcode(), dns.rcode.NXDOMAIN)
        self.assertEqual(self.udp(dv, "outside.example.org").rcode(), dns.rcode.SERVFAIL)
        self.assertEqual(self.udp(dv, "h9.example.test").rcode(), dns.rcode.REFUSED)
        # two questions: FORMERR
        q = h.make_query("h1.example.test", "A")
        wire = bytearray(q.to_wire())
        wire[5] = 2
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(h.scaled(3))
        s.sendto(bytes(wire), ("127.0.0.1", dv.port))
        ans = s.recv(4096)
        s.close()
        self.assertEqual(ans[3] & 0x0f, dns.rcode.FORMERR)
        self.assertEqual(self.udp(dv, "h2.example.test").rcode(), dns.rcode.NOERROR)
        recs = self.wait_qlog(qfile, 3, "3 error lines")
        st = self.delta(dv, st0)
        self.assertEqual(st["answers"], 6)
        self.assertEqual(st["querylog_entries"], 3)
        recs = [json.loads(x) for x in read_lines(qfile)]
        self.assertEqual([r["rcode"] for r in recs], ["SERVFAIL", "REFUSED", "FORMERR"])
        self.assertEqual(recs[0]["name"], "outside.example.org.")
        self.assertEqual(recs[2]["name"], None)  # a FORMERR's question is not known
        log("ok: errors only: %s of 6 answers logged" % [r["rcode"] for r in recs])

    def test_sampling(self):
        """log.query-sample: 10 logs 1 in 10 answers of each worker."""
        qfile = os.path.join(self.tmp, "sample.log")
        dv = self.start(log_cfg={"format": "json", "queries": "all", "query-sample": 10,
                                 "query-file": qfile}, workers=2)
        st0 = dv.stats()
        n = 400
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(h.scaled(3))
        for i in range(n):
            # a few source ports: both workers get some
            q = h.make_query("h%d.example.test" % (i % 50), "A")
            s.sendto(q.to_wire(), ("127.0.0.1", dv.port))
            s.recv(4096)
            if i == n // 2:
                s.close()
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.settimeout(h.scaled(3))
        s.close()
        st = self.delta(dv, st0)
        self.assertEqual(st["answers"], n)
        # per worker the 10th, 20th ... answer: n/10 less at most one
        # unfinished tenth per worker
        self.assertIn(st["querylog_entries"], range(n // 10 - 2, n // 10 + 1))
        total = st0["querylog_entries"] + st["querylog_entries"]
        lines = h.wait_for(lambda: (lambda ls: ls if len(ls) >= total else None)(read_lines(qfile)),
                           h.scaled(10), what="the sampled lines")
        self.assertEqual(len(lines), total)
        log("ok: sample 1/10: %d lines of %d answers" % (st["querylog_entries"], n))

    def test_stalled_writer(self):
        """The query log goes to a FIFO whose reader never reads: every
        query is still answered, and what did not fit is dropped and
        counted, in the stats line and on /metrics."""
        fifo = os.path.join(self.tmp, "queries.fifo")
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # held, never read
        try:
            admin = h.free_port()
            dv = self.start(log_cfg={"format": "json", "queries": "all", "query-file": fifo,
                                     "query-buffer": 16},
                            extra_yaml="admin:\n  listen: [\"http://127.0.0.1:%d\"]\n" % admin)
            st0 = dv.stats()
            n = 3000
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(h.scaled(3))
            t0 = time.monotonic()
            for i in range(n):
                q = h.make_query("h%d.example.test" % (i % 20), "A")
                s.sendto(q.to_wire(), ("127.0.0.1", dv.port))
                self.assertEqual(dns.message.from_wire(s.recv(4096)).rcode(), dns.rcode.NOERROR)
            took = time.monotonic() - t0
            s.close()
            st = self.delta(dv, st0)
            self.assertEqual(st["answers"], n)
            self.assertGreater(st["querylog_dropped"], n // 2, st)
            self.assertEqual(st["querylog_entries"] + st["querylog_dropped"], n)
            m = h.curl("http://127.0.0.1:%d/metrics" % admin)
            self.assertEqual(m.status, 200)
            got = re.search(rb"^dnsveil_querylog_dropped_total (\d+)$", m.body, re.M)
            self.assertIsNotNone(got)
            self.assertEqual(int(got.group(1)), st0["querylog_dropped"] + st["querylog_dropped"])
            # what the pipe holds is whole lines
            data = os.read(reader, 1 << 20)
            lines = data.decode().splitlines()
            self.assertGreater(len(lines), 10)
            for line in lines:
                json.loads(line)
            log("ok: stalled FIFO: %d answers in %.2f s, %d entries queued, %d dropped, "
                "%d whole lines in the pipe" % (n, took, st["querylog_entries"],
                                                st["querylog_dropped"], len(lines)))
            # the writer is not stuck for good: it stops when asked
            dv.stop()
        finally:
            os.close(reader)

    def test_query_file_refused(self):
        """A FIFO without a reader, or a file in a missing directory, is
        refused at start with the key named (not a start that hangs)."""
        fifo = os.path.join(self.tmp, "nobody.fifo")
        os.mkfifo(fifo)
        conf = os.path.join(self.tmp, "refused.yaml")
        for path in (fifo, os.path.join(self.tmp, "missing", "q.log")):
            cfg = h.base_config(log={"queries": "all", "query-file": path})
            cfg.update({"listen": ["dns://127.0.0.1:%d" % h.free_port()],
                        "upstream": [self.ub.url("tcp")], "fallback": []})
            with open(conf, "w") as f:
                f.write(h.to_yaml(cfg))
            r = h.run_dnsveil(["-c", conf], timeout=h.scaled(10))
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("log.query-file: '%s'" % path, r.stderr)
        log("ok: query-file without a reader or directory: refused at start")


class Dnstap(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        self.tmp = tempfile.mkdtemp(prefix="dv-dnstap-")
        self.capture = None

    def tearDown(self):
        if self.capture and self.capture.poll() is None:
            self.capture.kill()
            self.capture.wait()
        super().tearDown()
        subprocess.run(["rm", "-rf", self.tmp])

    def start(self, dnstap, listen=("dns",), **kw):
        cfg = h.doh_config(dnstap=dnstap, **kw)
        dv = h.Dnsveil(listen=list(listen), upstream=[self.ub], config=cfg, workers=2,
                       name="dnstap")
        self._dnsveils.append(dv)
        dv.start()
        return dv

    def ldns(self, path, *opts):
        r = subprocess.run([DNSTAP_LDNS, *opts, "-r", path], capture_output=True, text=True,
                           errors="replace", timeout=h.scaled(30))
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def queries(self, dv):
        """UDP, TCP, DoT, DoH, DoQ: five names and types."""
        self.assertEqual(h.udp_query(dv.port, "h1.example.test", "A").rcode(), dns.rcode.NOERROR)
        self.assertEqual(h.kdig(dv.port, "h2.example.test", "AAAA", tcp=True).rcode, 0)
        t = h.kdig_tls(dv.tls_port, [("h3.example.test", "TXT")])
        self.assertEqual(t.rcode, 0, t)
        wire = h.make_query("h4.example.test", "MX").to_wire()
        r = curl("--http2", "https://127.0.0.1:%d/dns-query?dns=%s" % (dv.https_port, b64url(wire)))
        self.assertEqual(r.status, 200, r)
        d = dv.doq(names=("h5.example.test", "NS"))
        self.assertEqual(d.rc, 0, d)

    def check(self, out_file):
        """dnstap-ldns -q: a CLIENT_QUERY and a CLIENT_RESPONSE for each of
        the five queries, with the client's address, the name and the type;
        Debian's dnstap (Go) -j: the transports (dnstap-ldns 0.2 prints
        "?" for DoT, DoH and DoQ, which its schema predates; dnstap 0.4
        knows DOT and DOH and prints DoQ as its number in the schema, 7)."""
        quiet = self.ldns(out_file, "-q")
        want = {"h1": ("A", "UDP"), "h2": ("AAAA", "TCP"), "h3": ("TXT", "DOT"),
                "h4": ("MX", "DOH"), "h5": ("NS", "DOQ")}
        for name, (rdtype, _) in want.items():
            for kind in ("CQ", "CR"):
                pat = r" %s 127\.0\.0\.1 \S+ \d+b \"%s\.example\.test\.\" IN %s$" % (kind, name, rdtype)
                self.assertRegex(quiet, re.compile(pat, re.M), quiet)
        mine = [x for x in quiet.splitlines() if re.search(r'"h\d\.example\.test\."', x)]
        self.assertEqual(len(mine), 10, quiet)
        r = subprocess.run([DNSTAP_GO, "-j", "-r", out_file], capture_output=True, text=True,
                           errors="replace", timeout=h.scaled(30))
        self.assertEqual(r.returncode, 0, r.stderr)
        seen = {}
        for line in r.stdout.splitlines():
            m = json.loads(line)["message"]
            text = m.get("query_message") or m.get("response_message")
            q = re.search(r"^;(h\d)\.example\.test\.\s", text, re.M)
            if not q:
                continue
            self.assertEqual(m["query_address"], "127.0.0.1")
            self.assertGreater(m["query_port"], 0)
            self.assertEqual(m["socket_family"], "INET")
            seen.setdefault(q.group(1), []).append((m["type"], m["socket_protocol"]))
        for name, (_, proto) in want.items():
            got = [(t, "DOQ" if p == "7" else p) for t, p in seen.get(name, [])]
            self.assertEqual(sorted(got), [("CLIENT_QUERY", proto), ("CLIENT_RESPONSE", proto)],
                             r.stdout)
        return quiet

    def test_socket(self):
        """fstrm_capture on a Unix socket, dnstap-ldns reading its file."""
        sock = os.path.join(self.tmp, "dnstap.sock")
        out = os.path.join(self.tmp, "capture.fstrm")
        self.capture = subprocess.Popen([FSTRM_CAPTURE, "-t", "protobuf:dnstap.Dnstap", "-u", sock,
                                         "-w", out], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        h.wait_for(lambda: os.path.exists(sock), h.scaled(10), what="fstrm_capture's socket")
        dv = self.start({"socket": sock}, listen=("dns", "tls", "https", "quic"))
        self.queries(dv)

        st = dv.stats()
        # two frames an answer, the readiness probes' too
        self.assertEqual(st["dnstap_frames"], 2 * st["answers"])
        self.assertEqual(st["dnstap_dropped"], 0)
        dv.stop()  # sends what is queued
        self.capture.send_signal(signal.SIGINT)
        self.capture.wait(timeout=h.scaled(10))
        quiet = self.check(out)
        log("ok: dnstap via fstrm_capture, read by dnstap-ldns:\n" + quiet)

    def test_late_collector(self):
        """dnsveil starts before its collector (a sidecar that comes up
        later): it connects within a second of the collector's start, and
        the frames queued meanwhile arrive too."""
        sock = os.path.join(self.tmp, "late.sock")
        out = os.path.join(self.tmp, "late.fstrm")
        dv = self.start({"socket": sock})
        self.assertEqual(h.udp_query(dv.port, "h7.example.test", "A").rcode(), dns.rcode.NOERROR)
        self.capture = subprocess.Popen([FSTRM_CAPTURE, "-t", "protobuf:dnstap.Dnstap", "-u", sock,
                                         "-w", out], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        h.wait_for(lambda: os.path.exists(sock), h.scaled(10), what="fstrm_capture's socket")
        # connected: the collector's socket has an established connection
        # (ss, iproute2)

        def connected():
            r = subprocess.run(["ss", "-xaH"], capture_output=True, text=True)
            return any(x.split()[1] == "ESTAB" and sock in x.split() for x in r.stdout.splitlines())
        h.wait_for(connected, h.scaled(10), what="dnsveil connected to the late collector")
        self.assertEqual(h.udp_query(dv.port, "h8.example.test", "AAAA").rcode(), dns.rcode.NOERROR)
        dv.stop()
        self.capture.send_signal(signal.SIGINT)
        self.capture.wait(timeout=h.scaled(10))
        quiet = self.ldns(out, "-q")
        for name, rdtype in (("h7", "A"), ("h8", "AAAA")):
            for kind in ("CQ", "CR"):
                self.assertRegex(quiet, re.compile(r" %s 127\.0\.0\.1 UDP \d+b \"%s\.example\.test\.\" IN %s$"
                                                   % (kind, name, rdtype), re.M), quiet)
        log("ok: a collector started after dnsveil got the frames queued before it and after")

    def test_file(self):
        """dnstap.file, read by dnstap-ldns, with the query log on too:
        both see every answer, DoQ's with its transport."""
        out = os.path.join(self.tmp, "dnsveil.fstrm")
        qfile = os.path.join(self.tmp, "queries.log")
        dv = self.start({"file": out}, listen=("dns", "tls", "https", "quic"),
                        log={"format": "json", "queries": "all", "query-file": qfile})
        self.queries(dv)
        st = dv.stats()
        dv.stop()
        self.check(out)
        recs = [json.loads(x) for x in read_lines(qfile)]
        self.assertEqual(len(recs), st["answers"])
        self.assertEqual(st["dnstap_frames"], 2 * st["answers"])
        mine = sorted((r["name"], r["transport"]) for r in recs if r["name"] != PROBE)
        self.assertEqual(mine, [("h1.example.test.", "udp"), ("h2.example.test.", "tcp"),
                                ("h3.example.test.", "tls"), ("h4.example.test.", "https"),
                                ("h5.example.test.", "quic")])
        log("ok: dnstap.file read by dnstap-ldns; the query log beside it has the same %d answers"
            % len(recs))

    def test_resolver_messages(self):
        """dnstap.resolver: each query to the upstream and its answer as
        RESOLVER_QUERY and RESOLVER_RESPONSE, with Unbound's address and
        port as the responder and its transport (TCP here); a cache hit
        sends none; health probes send none."""
        out = os.path.join(self.tmp, "resolver.fstrm")
        dv = self.start({"file": out, "resolver": "true"})
        for _ in range(2):  # a miss, then a hit
            self.assertEqual(h.udp_query(dv.port, "h9.example.test", "A").rcode(),
                             dns.rcode.NOERROR)
        st = dv.stats()
        dv.stop()
        quiet = self.ldns(out, "-q")
        mine = [x.split()[2] for x in quiet.splitlines() if '"h9.example.test."' in x]
        self.assertEqual(sorted(mine), ["CQ", "CQ", "CR", "CR", "RQ", "RR"], quiet)
        self.assertEqual(st["dnstap_frames"],
                         2 * st["answers"] + st["upstream_queries"] + st["upstream_answers"], st)
        r = subprocess.run([DNSTAP_GO, "-j", "-r", out], capture_output=True, text=True,
                           errors="replace", timeout=h.scaled(30))
        self.assertEqual(r.returncode, 0, r.stderr)
        got = []
        for line in r.stdout.splitlines():
            m = json.loads(line)["message"]
            if not m["type"].startswith("RESOLVER_"):
                continue
            text = m.get("query_message") or m.get("response_message")
            if "h9.example.test." not in text:
                continue
            got.append((m["type"], m["response_address"], m["response_port"],
                        m["socket_protocol"], "query_time" in m))
            if m["type"] == "RESOLVER_RESPONSE":
                self.assertIn(h.host_addr(9), text)
                self.assertIn("response_time", m)
        self.assertEqual(sorted(got), [("RESOLVER_QUERY", "127.0.0.1", self.ub.port, "TCP", True),
                                       ("RESOLVER_RESPONSE", "127.0.0.1", self.ub.port, "TCP",
                                        True)], r.stdout)
        log("ok: dnstap.resolver: one RESOLVER_QUERY and RESOLVER_RESPONSE for the miss, none "
            "for the hit:\n" + quiet)

    def test_stalled_collector(self):
        """A collector that accepts the connection and never reads (nor
        answers the Frame Streams handshake): every query is answered and
        the frames that do not fit are dropped and counted."""
        sock = os.path.join(self.tmp, "stalled.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(sock)
        srv.listen(4)
        try:
            dv = self.start({"socket": sock, "buffer": 16})
            conn, _ = srv.accept()  # never read
            st0 = dv.stats()
            n = 2000
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(h.scaled(3))
            t0 = time.monotonic()
            for i in range(n):
                q = h.make_query("h%d.example.test" % (i % 20), "A")
                s.sendto(q.to_wire(), ("127.0.0.1", dv.port))
                self.assertEqual(dns.message.from_wire(s.recv(4096)).rcode(), dns.rcode.NOERROR)
            took = time.monotonic() - t0
            s.close()
            st = delta(dv, st0)
            self.assertEqual(st["answers"], n)
            self.assertGreater(st["dnstap_dropped"], n, st)
            self.assertEqual(st["dnstap_frames"] + st["dnstap_dropped"], 2 * n)
            log("ok: stalled collector: %d answers in %.2f s, %d frames queued, %d dropped"
                % (n, took, st["dnstap_frames"], st["dnstap_dropped"]))
            conn.close()
        finally:
            srv.close()

    def test_config_both(self):
        """dnstap.socket and dnstap.file together are refused."""
        verdict, out = h.check_config_key("dnstap:\n  socket: /tmp/a.sock\n  file: /tmp/b.fstrm\n")
        self.assertEqual(verdict, "rejected", out)
        self.assertIn("dnstap.file: dnstap.socket is set too", out)


if __name__ == "__main__":
    h.main()
