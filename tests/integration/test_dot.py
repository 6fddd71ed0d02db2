#!/usr/bin/python3
"""DNS over TLS (RFC 7858) as Android's Private DNS and real stub resolvers
use it: a certificate chain that verifies against the test CA for dns.test,
ALPN "dot", TLS 1.2 and 1.3 only, session resumption across workers, EDNS
padding (RFC 8467) and keepalive (RFC 7828), real clients (kdig, openssl
s_client, stubby, dnsperf), 2,000 idle connections, hostile clients, and
certificate reload on SIGHUP.

dnsveil listens on dns://127.0.0.1:PORT (what the harness polls) and
tls://127.0.0.1:TLS_PORT with certs/dev-cert.pem (leaf for dns.test and IP
SANs, chain leaf+CA) unless a test makes its own PKI."""

import concurrent.futures
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.edns  # noqa: E402
import dns.message  # noqa: E402
import dns.rcode  # noqa: E402

WWW = ("www.example.test", "A")
WWW_ADDR = "192.0.2.1"
IDLE_MS = 12300          # edns-tcp-keepalive must answer IDLE_MS / 100 = 123
PAD_BLOCK = 468          # RFC 8467 response block

STRACE = shutil.which("strace") or "/usr/bin/strace"

h.ensure_dev_certs()


class DotBase(h.IntegrationTest):
    """Unbound as the local resolver and a dnsveil with a DoT listener."""

    workers = 2
    limits = {}

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        self.dv = self.start_dot(config=h.dot_config(limits=dict(
            {"tcp-idle-timeout-ms": IDLE_MS}, **self.limits)))

    def start_dot(self, config, workers=None):
        d = h.Dnsveil(listen=["dns", "tls"], upstream=[self.ub], config=config,
                          workers=workers or self.workers, name="dot")
        self._dnsveils.append(d)
        return d.start()

    def stats(self):
        return self.dv.stats()

    def wait_stat(self, before, key, at_least=1, timeout=None):
        """Poll the stats until counter `key` grew by `at_least`."""
        def grown():
            st = self.stats()
            return st if st[key] - before[key] >= at_least else None
        try:
            return h.wait_for(grown, timeout or h.scaled(5), interval=0.2,
                              what="stats %s to grow by %d" % (key, at_least))
        except AssertionError as e:
            self.fail("%s; stats delta: %s" % (e, h.stat_delta(before, self.stats())))

    def assert_dot_healthy(self, what, dv=None):
        """The process is alive and a well-behaved, verifying kdig +tls
        client gets the right answer."""
        dv = dv or self.dv
        self.assertTrue(dv.alive(), "dnsveil died after %s (exit %s):\n%s" % (
            what, dv.proc.returncode, h.tail(dv.stderr_path)))
        r = h.kdig_tls(dv.tls_port, [WWW])
        self.assertEqual(h.kdig_answers(r), [("www.example.test.", [WWW_ADDR])],
                         "a verifying kdig +tls client after %s: %r\ndnsveil stderr:\n%s" % (
                             what, r, h.tail(dv.stderr_path)))
        log("ok: dnsveil alive and a verifying kdig +tls gets %s after %s" % (WWW_ADDR, what))


# ====================================================================== clients

class DotClients(DotBase):

    # ------------------------------------------------------------- 1. kdig
    def test_1_kdig_verified_wrong_name_keepopen(self):
        port = self.dv.tls_port
        r = h.kdig_tls(port, [WWW, ("h42.example.test", "A")])
        self.assertEqual(r.rc, 0, "kdig +tls +tls-ca +tls-hostname=dns.test failed: %r" % r)
        self.assertEqual(h.kdig_answers(r), [("www.example.test.", [WWW_ADDR]),
                                              ("h42.example.test.", [h.host_addr(42)])],
                         "kdig +tls verified answers: %r" % r)
        log("ok: kdig +tls +tls-ca=certs/ca.pem +tls-hostname=dns.test answers %s" % WWW_ADDR)

        st0 = self.stats()
        r = h.kdig_tls(port, [WWW], hostname="wrong.test")
        st1 = self.stats()
        log("kdig +tls-hostname=wrong.test: rc %s, stderr: %s" % (r.rc, r.stderr.strip()))
        self.assertEqual(r.messages, [], "kdig with +tls-hostname=wrong.test must not get an "
                         "answer (the certificate is for dns.test): %r" % r)
        self.assertNotEqual(r.rc, 0, "kdig +tls-hostname=wrong.test exited 0: %r" % r)
        self.assertRegex(r.stdout + r.stderr, r"(?i)certificate|handshake",
                         "kdig should say the certificate did not verify: %r" % r)
        log("ok: +tls-hostname=wrong.test fails verification, no answer (dnsveil stats delta "
            "tls_failed %d, tcp_errors %d)" % (st1["tls_failed"] - st0["tls_failed"],
                                               st1["tcp_errors"] - st0["tcp_errors"]))

        names = [WWW, ("mail.example.test", "A"), ("h1.example.test", "A"),
                 ("h2.example.test", "A"), ("alias.example.test", "A")]
        want = [("www.example.test.", [WWW_ADDR]), ("mail.example.test.", ["192.0.2.25"]),
                ("h1.example.test.", [h.host_addr(1)]), ("h2.example.test.", [h.host_addr(2)]),
                ("alias.example.test.", [WWW_ADDR])]
        st0 = self.stats()
        r = h.kdig_tls(port, names, "+keepopen")
        st1 = self.stats()
        d = h.stat_delta(st0, st1, ["tcp_connections", "tls_handshakes", "queries"])
        log("kdig +keepopen with %d questions: dnsveil stats delta %s" % (len(names), d))
        self.assertEqual(h.kdig_answers(r), want, "kdig +keepopen answers: %r" % r)
        self.assertEqual(d["tcp_connections"], 1, "kdig +keepopen with %d questions must use one "
                         "connection; tcp_connections grew by %d" % (len(names),
                                                                     d["tcp_connections"]))
        self.assertEqual(d["tls_handshakes"], 1, "one handshake for +keepopen: %s" % d)
        self.assertEqual(d["queries"], len(names), d)
        log("ok: %d queries over one DoT connection (tcp_connections +1)" % len(names))

    # ------------------------------------------------------------- 2. openssl
    def test_2_openssl_chain_alpn_versions(self):
        port = self.dv.tls_port
        rc, out = h.s_client(port, "-showcerts", "-CAfile", h.CA, "-verify_return_error",
                              "-alpn", "dot")
        certs = h.pem_certs(out)
        subjects = re.findall(r"^\s*(\d) s:(.*)$", out, re.M)
        log("s_client -showcerts: rc %d, %d certificates: %s" % (rc, len(certs), subjects))
        self.assertEqual(rc, 0, "s_client with -CAfile certs/ca.pem -verify_return_error:\n" + out)
        self.assertEqual(len(certs), 2, "the full chain (leaf + CA) must be sent; got %d "
                         "certificates:\n%s" % (len(certs), out))
        self.assertTrue(subjects and subjects[0][0] == "0" and "CN = dns.test" in subjects[0][1],
                        "depth 0 must be the dns.test leaf: %s" % subjects)
        self.assertTrue(len(subjects) > 1 and "dev CA" in subjects[1][1],
                        "depth 1 must be the CA: %s" % subjects)
        self.assertIn("Verify return code: 0 (ok)", out, out)
        self.assertIn("ALPN protocol: dot", out, "ALPN dot not negotiated:\n" + out)
        log("ok: chain of 2 sent, verifies with certs/ca.pem, ALPN protocol: dot")

        # ALPN is optional: no ALPN, or one we do not speak, still connects
        for alpn in (None, "h2"):
            args = ["-CAfile", h.CA, "-verify_return_error"] + (["-alpn", alpn] if alpn else [])
            rc, out = h.s_client(port, *args)
            self.assertEqual(rc, 0, "s_client %s:\n%s" % (args, out))
            self.assertIn("No ALPN negotiated", out, "ALPN %s:\n%s" % (alpn, out))
        log("ok: clients without ALPN or offering only h2 connect with no ALPN chosen")

        # TLS 1.1 refused by the server (SECLEVEL=0 so that OpenSSL really offers it)
        rc, out = h.s_client(port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", h.CA)
        log("s_client -tls1_1: rc %d, %s" % (rc, "; ".join(
            x for x in out.splitlines() if "alert" in x or "Protocol" in x or "New," in x)))
        self.assertNotRegex(out, r"New, TLSv1\.1", "TLS 1.1 was accepted:\n" + out)
        self.assertRegex(out, r"alert protocol version|unsupported protocol",
                         "TLS 1.1 must be refused with a protocol_version alert:\n" + out)
        log("ok: TLS 1.1 refused (protocol version alert)")

        for flag, ver in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            rc, out = h.s_client(port, flag, "-CAfile", h.CA, "-verify_return_error",
                                  "-alpn", "dot")
            self.assertEqual(rc, 0, "s_client %s:\n%s" % (flag, out))
            self.assertIn("New, %s" % ver, out, "%s not negotiated:\n%s" % (ver, out))
            self.assertIn("Verify return code: 0 (ok)", out)
            self.assertIn("ALPN protocol: dot", out)
        # and DNS really flows over each version (Python ssl pinned to it)
        for ver in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = h.client_context(min_version=ver, max_version=ver)
            s = h.tls_connect(port, ctx=ctx)
            try:
                self.assertEqual(s.version(), ver.name.replace("v1_", "v1."))
                self.assertEqual(s.selected_alpn_protocol(), "dot")
                _, m = h.stream_query(s, h.make_query("www.example.test", qid=0x1234))
            finally:
                s.close()
            self.assertEqual((m.id, h.a_records(m)), (0x1234, [WWW_ADDR]), str(m))
        log("ok: TLS 1.2 and 1.3 handshake, verify, ALPN dot and answer queries")

    # ------------------------------------------------------------- 3. SNI
    def test_3_sni(self):
        port = self.dv.tls_port
        # with SNI dns.test (name verified)
        s = h.tls_connect(port)
        try:
            _, m = h.stream_query(s, h.make_query("www.example.test"))
        finally:
            s.close()
        self.assertEqual(h.a_records(m), [WWW_ADDR], str(m))
        # without SNI: an IP-literal client verifies the IP SAN, sends no SNI
        s = h.tls_connect(port, server_hostname="127.0.0.1")
        try:
            _, m = h.stream_query(s, h.make_query("mail.example.test"))
        finally:
            s.close()
        self.assertEqual(h.a_records(m), ["192.0.2.25"], str(m))
        log("ok: queries with SNI dns.test and without SNI (IP SAN 127.0.0.1) are answered")
        # the SNI each connection arrived with (what the identity stage
        # reads) is in its handshake's debug line: the verified name, none
        # for an IP-literal client, and a client-ID name as a device sends it
        d = self.start_dot(config=dict(h.dot_config(), **{"log-level": "debug"}), workers=1)
        unverified = h.client_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        for hostname, ctx, want in (("dns.test", None, "dns.test"),
                                    ("127.0.0.1", None, "-"),
                                    ("laptop-42.dns.test", unverified, "laptop-42.dns.test")):
            mark = len(d.stderr_text())
            s = h.tls_connect(d.tls_port, server_hostname=hostname, ctx=ctx)
            try:
                cport = s.getsockname()[1]
                _, m = h.stream_query(s, h.make_query("www.example.test"))
            finally:
                s.close()
            self.assertEqual(h.a_records(m), [WWW_ADDR], str(m))
            lines = d.log_lines(r"tls: worker \d+: connection from 127\.0\.0\.1:%d: "
                                r"sni (\S+), alpn (\S+)" % cport, start=mark)
            self.assertEqual([x.groups() for x in lines], [(want, "dot")],
                             "one handshake line with sni %s for a client naming %s:\n%s" % (
                                 want, hostname, d.stderr_text()[mark:][-2000:]))
        log("ok: the debug line of each connection names the SNI it arrived with")

    # ------------------------------------------------------------- 4. stubby
    def test_4_stubby_strict_profile(self):
        st0 = self.stats()
        stub = h.Stubby(self.dv.tls_port)
        try:
            stub.start()
            r = h.kdig(stub.port, "www.example.test", "A", timeout=h.scaled(5))
            r2 = h.kdig(stub.port, "h77.example.test", "A", timeout=h.scaled(5))
            time.sleep(0.2)
            text = stub.log_text()
        finally:
            stub.stop(keep=self._failure_count() > self._failures_at_start)
        log("stubby log:\n" + text)
        self.assertEqual((r.status, [x[3] for x in r.records()]), ("NOERROR", [WWW_ADDR]),
                         "kdig over UDP to stubby (strict profile, TLS only): %r\nstubby log:\n%s"
                         % (r, text))
        self.assertEqual([x[3] for x in r2.records()], [h.host_addr(77)], repr(r2))
        self.assertIn("Verify passed", text, "stubby did not verify dnsveil's certificate")
        self.assertNotIn("Verify failed", text)
        self.assertGreaterEqual(self.stats()["tls_handshakes"] - st0["tls_handshakes"], 1)
        log("ok: stubby (GETDNS_AUTHENTICATION_REQUIRED, tls_auth_name dns.test) verified "
            "dnsveil and relayed the answers")

        # the same stub with the wrong authentication name must refuse the server
        stub = h.Stubby(self.dv.tls_port, auth_name="wrong.test")
        try:
            stub.start()
            r = h.kdig(stub.port, "www.example.test", "A", timeout=h.scaled(5))
            time.sleep(0.2)
            text = stub.log_text()
        finally:
            stub.stop()
        self.assertTrue(r.json is None or (r.status != "NOERROR" and not r.records()),
                        "stubby with tls_auth_name wrong.test must not get an answer: %r" % r)
        self.assertIn("Verify failed", text, "stubby log with wrong.test:\n" + text)
        log("ok: stubby with tls_auth_name wrong.test fails verification (%s)" % (
            r.status if r.json else "no answer"))

    # ------------------------------------------------------------- 5. dnsperf
    def test_5_dnsperf_dot(self):
        qps = 1000 if h.SANITIZE else 3000
        secs = 5 if h.SANITIZE else 10
        qfile = os.path.join(self.dv.dir, "queries.txt")
        with open(qfile, "w") as f:
            for i in range(h.NUM_HOSTS):
                f.write("h%d.example.test A\n" % i)
            f.write("www.example.test A\nmail.example.test A\n")
        st0 = self.stats()
        res, out = h.dnsperf(self.dv.tls_port, qfile, "-m", "dot", "-c", "20", "-l", str(secs),
                             "-Q", str(qps), "-t", "5")
        st1 = self.stats()
        d = h.stat_delta(st0, st1, ["queries", "answers", "tcp_connections", "tls_handshakes",
                                     "tls_failed", "servfail", "tcp_errors"])
        log(out)
        log("dnsperf -m dot -c 20 -l %d -Q %d: sent %s, completed %s, lost %s, %s qps, "
            "avg latency %s s; dnsveil delta %s" % (secs, qps, res.get("sent"),
                                                    res.get("completed"), res.get("lost"),
                                                    res.get("qps"), res.get("avg_latency"), d))
        self.assertEqual(res["rc"], 0, "dnsperf exited %s:\n%s" % (res["rc"], out))
        self.assertIn("lost", res, "no 'Queries lost:' in dnsperf output:\n%s" % out)
        self.assertGreater(res.get("completed", 0), 0, "no query completed:\n" + out)
        self.assertEqual(res["lost"], 0, "%d queries lost over DoT:\n%s" % (res["lost"], out))
        self.assertEqual(res.get("noerror", 0), res["completed"], "not all NOERROR:\n" + out)
        self.assertGreater(res.get("qps", 0), qps * 0.5, "only %s qps of %d" % (res.get("qps"),
                                                                               qps))
        self.assertGreaterEqual(d["tls_handshakes"], 20, "20 dnsperf clients: %s" % d)
        self.assertGreaterEqual(d["answers"], res["completed"], d)
        self.assertEqual(d["servfail"], 0, d)
        log("ok: dnsperf over DoT, 0 lost")

    # ------------------------------------- 5b. one read per batch of records
    def _traced(self, pid):
        """Every thread of `pid` is traced (strace has attached)."""
        tasks = os.listdir("/proc/%d/task" % pid)
        for t in tasks:
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                if re.search(r"^TracerPid:\s+0$", f.read(), re.M):
                    return False
        return bool(tasks)

    def test_5b_pipelined_records_one_read(self):
        """200 queries pipelined on one DoT connection, each its own TLS
        record (as dnsperf and stub resolvers send them), arriving together:
        dnsveil reads the socket once per batch, not twice per record (a
        5-byte header, then the body: wolfSSL's own I/O did that, 2 recv
        system calls per query).  Counted with strace on every thread."""
        n = 200
        pid = self.dv.proc.pid
        s = h.tls_connect(self.dv.tls_port)
        s.settimeout(h.scaled(5))
        # the name is cached: no upstream traffic while counting
        h.send_msg(s, h.make_query(*WWW, qid=1).to_wire())
        self.assertEqual(dns.message.from_wire(h.recv_msg(s)).rcode(), dns.rcode.NOERROR)
        trace = os.path.join(self.dv.dir, "strace.out")
        st = subprocess.Popen([STRACE, "-f", "-qq", "-e", "trace=recvfrom,read,recvmsg",
                               "-o", trace, "-p", str(pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            h.wait_for(lambda: self._traced(pid), h.scaled(10), interval=0.05,
                       what="strace to attach to every thread of dnsveil")
            # cork: the records leave together, as one pipelined burst
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            for i in range(n):
                h.send_msg(s, h.make_query(*WWW, qid=1000 + i).to_wire())
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
            ids = set()
            for _ in range(n):
                r = dns.message.from_wire(h.recv_msg(s))
                self.assertEqual(r.rcode(), dns.rcode.NOERROR)
                self.assertIn(WWW_ADDR, r.to_text())
                ids.add(r.id)
        finally:
            st.send_signal(signal.SIGINT)
            st.wait(h.scaled(10))
            s.close()
        self.assertEqual(ids, set(range(1000, 1000 + n)), "every query answered once")
        with open(trace) as f:
            reads = [ln for ln in f if re.search(r"\b(recvfrom|read|recvmsg)\(", ln)]
        log("%d pipelined queries, each its own TLS record: dnsveil made %d socket reads "
            "(wolfSSL's own I/O: 2 per record and one more)" % (n, len(reads)))
        self.assertLess(len(reads), n // 4, "socket reads for %d pipelined records:\n%s" % (
            n, "".join(reads[:20])))

    # ------------------------------------------------------------- 6. resumption
    def _resume(self, flag, ver, n):
        port = self.dv.tls_port
        sess = os.path.join(self.dv.dir, "sess-%s.pem" % flag.strip("-"))
        st0 = self.stats()
        # keep stdin open a moment so that TLS 1.3 NewSessionTickets arrive
        rc, out = h.s_client(port, flag, "-CAfile", h.CA, "-verify_return_error",
                              "-sess_out", sess, hold=1.0)
        self.assertEqual(rc, 0, out)
        self.assertIn("New, %s" % ver, out, out)
        if ver == "TLSv1.3":
            self.assertIn("Post-Handshake New Session Ticket arrived", out,
                          "no TLS 1.3 NewSessionTicket within 1 s:\n" + out)
        self.assertTrue(os.path.isfile(sess) and os.path.getsize(sess) > 0,
                        "s_client wrote no session to %s:\n%s" % (sess, out))
        results = []
        for _ in range(n):
            rc, out = h.s_client(port, flag, "-CAfile", h.CA, "-verify_return_error",
                                  "-sess_in", sess, hold=0.3)
            m = re.search(r"^(New|Reused), (\S+),", out, re.M)
            results.append(m.group(1) if m else "?")
            self.assertEqual(rc, 0, out)
            self.assertTrue(m and m.group(1) == "Reused" and m.group(2) == ver,
                            "resumption %d of %d with %s was not reused (so far %s):\n%s" % (
                                len(results), n, ver, results, out))
        # s_client may exit before dnsveil has read its last flight
        st1 = self.wait_stat(st0, "tls_handshakes", n + 1)
        d = h.stat_delta(st0, st1, ["tls_handshakes", "tls_resumed", "tls_failed"])
        log("%s: %d connections with -sess_in: %s; dnsveil delta %s" % (ver, n, results, d))
        self.assertEqual(d["tls_resumed"], n, "tls_resumed must count the %d resumptions: %s"
                         % (n, d))
        self.assertEqual(d["tls_handshakes"], n + 1, d)
        return d

    def test_6_session_resumption(self):
        # 2 workers with their own SO_REUSEPORT sockets: the kernel spreads
        # the connections by source port, so 10 resumptions land on both
        # (all on one worker has probability 2/2^10)
        self.assertEqual(self.workers, 2)
        n13 = 10
        d13 = self._resume("-tls1_3", "TLSv1.3", n13)
        log("ok: TLS 1.3: %d of %d resumed (tls_resumed +%d)" % (n13, n13, d13["tls_resumed"]))
        n12 = 6
        d12 = self._resume("-tls1_2", "TLSv1.2", n12)
        log("ok: TLS 1.2: %d of %d resumed (tls_resumed +%d)" % (n12, n12, d12["tls_resumed"]))

    # ------------------------------------------------------------- 9. EDNS
    def _padded_check(self, s, name, rdtype, options, what):
        q = dns.message.make_query(name, rdtype, use_edns=0, options=options)
        raw, m = h.stream_query(s, q)
        codes = [int(o.otype) for o in m.options]
        log("%s %s %s: answer %d bytes (%s), options %s" % (what, name, rdtype, len(raw),
                                                            dns.rcode.to_text(m.rcode()), codes))
        self.assertEqual(len(raw) % PAD_BLOCK, 0, "%s: answer to a padded query for %s %s is %d "
                         "bytes, not a multiple of %d" % (what, name, rdtype, len(raw),
                                                          PAD_BLOCK))
        self.assertIn(12, codes, "%s: no Padding option in the answer" % what)
        self.assertEqual(codes[-1], 12, "%s: Padding must be the last option: %s" % (what, codes))
        return raw, m

    def test_9_edns_padding_and_keepalive(self):
        s = h.tls_connect(self.dv.tls_port)
        try:
            pad_empty = [dns.edns.GenericOption(12, b"")]
            fresh = h.unique_label("pad") + ".wild.example.test"
            cases = [("www.example.test", "A"),        # miss then hit
                     ("www.example.test", "A"),
                     (fresh, "A"),                     # always a miss
                     ("big.example.test", "TXT"),      # ~3 KB
                     ("nope.example.test", "A")]       # NXDOMAIN + SOA
            for name, t in cases:
                self._padded_check(s, name, t, pad_empty, "empty Padding option")
            # a query padded the RFC 8467 way (to 128) by dnspython
            q = dns.message.make_query("mail.example.test", "A", use_edns=0, pad=128)
            self.assertEqual(len(q.to_wire()) % 128, 0)
            raw, m = h.stream_query(s, q)
            self.assertEqual(len(raw) % PAD_BLOCK, 0, "answer %d bytes" % len(raw))
            self.assertEqual(h.a_records(m), ["192.0.2.25"])
            log("ok: padded queries get answers padded to a multiple of %d" % PAD_BLOCK)

            # edns-tcp-keepalive: our idle timeout in units of 100 ms
            want = struct.pack("!H", IDLE_MS // 100)
            for opts, padded in (([dns.edns.GenericOption(11, b"")], False),
                                 ([dns.edns.GenericOption(11, b""),
                                   dns.edns.GenericOption(12, b"")], True)):
                for name, t in (("www.example.test", "A"), ("big.example.test", "TXT")):
                    q = dns.message.make_query(name, t, use_edns=0, options=opts)
                    raw, m = h.stream_query(s, q)
                    ka = [o for o in m.options if int(o.otype) == 11]
                    log("keepalive%s %s: %d bytes, options %s, keepalive %s" % (
                        " + padding" if padded else "", name, len(raw),
                        [int(o.otype) for o in m.options], [o.to_wire() for o in ka]))
                    self.assertEqual(m.rcode(), 0, str(m))
                    self.assertEqual(len(ka), 1, "edns-tcp-keepalive not echoed: %s" % m)
                    self.assertEqual(ka[0].to_wire(), want, "keepalive timeout must be "
                                     "tcp-idle-timeout-ms/100 = %d: got %r" % (
                                         IDLE_MS // 100, ka[0].to_wire()))
                    if padded:
                        self.assertEqual(len(raw) % PAD_BLOCK, 0, "keepalive+padding answer "
                                         "is %d bytes" % len(raw))
                        self.assertEqual(int(m.options[-1].otype), 12, "padding not last")
            log("ok: edns-tcp-keepalive answered with timeout %d (x100 ms), alone and with "
                "padding" % (IDLE_MS // 100))
        finally:
            s.close()
        # plain DNS over TCP on the same dnsveil: keepalive too (RFC 7828)
        q = dns.message.make_query("www.example.test", "A", use_edns=0,
                                   options=[dns.edns.GenericOption(11, b"")])
        m = dns.query.tcp(q, "127.0.0.1", port=self.dv.port, timeout=h.scaled(3))
        ka = [o.to_wire() for o in m.options if int(o.otype) == 11]
        self.assertEqual(ka, [struct.pack("!H", IDLE_MS // 100)], str(m))
        log("ok: edns-tcp-keepalive over plain TCP too")


# ====================================================================== idle

class DotIdleConnections(DotBase):
    """7. Thousands of idle TLS connections held open cost little memory and
    do not disturb active clients."""

    N = int(2000 / h.SCALE)
    limits = {"tls-handshakes-per-ip": 0, "tcp-max-connections": 10000,
              "tcp-idle-timeout-ms": 300000}

    def setUp(self):
        self.nofile = h.raise_nofile(65536)   # inherited by dnsveil
        super().setUp()

    def _open_many(self, n, batch=200, threads=32):
        conns, errors = [], []
        deadline = time.monotonic() + h.scaled(90)

        def one(_):
            return h.tls_connect(self.dv.tls_port, timeout=h.scaled(20))
        with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as ex:
            while len(conns) < n and time.monotonic() < deadline and len(errors) < 20:
                k = min(batch, n - len(conns))
                for f in [ex.submit(one, i) for i in range(k)]:
                    try:
                        conns.append(f.result())
                    except (OSError, ssl.SSLError) as e:
                        errors.append(repr(e))
        return conns, errors

    def test_7_idle_connections(self):
        n = self.N
        self.assertGreater(self.nofile, 2 * n + 200, "RLIMIT_NOFILE %d too low for %d "
                           "connections" % (self.nofile, n))
        # warm up: code paths, pools, TLS tables
        warm, errs = self._open_many(100, batch=100)
        self.assertEqual(errs, [])
        for s in warm[:5]:
            h.stream_query(s, h.make_query("www.example.test"))
        for s in warm:
            s.close()
        time.sleep(0.5)
        st0 = self.stats()
        rss0 = h.rss_bytes(self.dv.pid)
        t0 = time.monotonic()
        conns, errors = self._open_many(n)
        dt = time.monotonic() - t0
        try:
            self.assertEqual(errors, [], "handshake errors while opening %d connections "
                             "(%d open): %s" % (n, len(conns), errors[:5]))
            self.assertEqual(len(conns), n, "only %d of %d connections opened in time" % (
                len(conns), n))
            time.sleep(1.0)
            rss1 = h.rss_bytes(self.dv.pid)
            per = (rss1 - rss0) / float(n)
            log("%d idle TLS connections opened in %.1fs; dnsveil RSS %.1f MiB -> %.1f MiB: "
                "%.0f bytes per idle connection" % (n, dt, rss0 / 2**20, rss1 / 2**20, per))
            st1 = self.stats()
            d = h.stat_delta(st0, st1, ["tcp_connections", "tls_handshakes", "tcp_refused",
                                         "tcp_idle_closed", "tcp_errors", "tls_failed"])
            log("stats delta: %s" % d)
            self.assertEqual(d["tls_handshakes"], n, d)
            self.assertEqual(d["tcp_refused"] + d["tcp_idle_closed"] + d["tls_failed"], 0, d)

            # active clients are served while the idle ones are held
            qfile = os.path.join(self.dv.dir, "queries.txt")
            with open(qfile, "w") as f:
                for i in range(h.NUM_HOSTS):
                    f.write("h%d.example.test A\n" % i)
            qps = 500 if h.SANITIZE else 2000
            st_a = self.stats()
            res, out = h.dnsperf(self.dv.tls_port, qfile, "-m", "dot", "-c", "10", "-l", "4",
                                 "-Q", str(qps), "-t", "5")
            st_b = self.stats()
            # whose loss it was: dnsveil's own count of queries received and
            # answers sent over the run
            served = h.stat_delta(st_a, st_b, ["queries", "answers", "servfail", "tcp_errors",
                                                "tls_failed", "upstream_failures",
                                                "upstream_timeouts", "deadline_expired"])
            out += "\ndnsveil over the run: %s" % served
            log("dnsperf -m dot with %d idle connections held: sent %s, completed %s, lost %s, "
                "%s qps" % (n, res.get("sent"), res.get("completed"), res.get("lost"),
                            res.get("qps")))
            self.assertEqual(res["rc"], 0, out)
            self.assertGreater(res.get("completed", 0), 0, out)
            self.assertEqual(res.get("lost"), 0, "queries lost with idle connections held:\n"
                             + out)
            r = h.kdig_tls(self.dv.tls_port, [WWW])
            self.assertEqual(h.kdig_answers(r), [("www.example.test.", [WWW_ADDR])], repr(r))

            # the idle connections are really held: a sample still answers
            step = max(1, n // 20)
            for i in range(0, n, step):
                _, m = h.stream_query(conns[i], h.make_query("h%d.example.test" % (i % 1000)))
                self.assertEqual(h.a_records(m), [h.host_addr(i % 1000)],
                                 "idle connection %d: %s" % (i, m))
            log("ok: %d sampled idle connections still answer" % len(range(0, n, step)))

            # about 4 KiB measured since a TLS 1.3 connection runs its own
            # record layer and frees wolfSSL's connection object after the
            # handshake (23 KiB before; 63 KiB before the session object's
            # zero pages were given back, 31 KiB before wolfSSL's handshake
            # arrays were freed and an idle connection gave its stream
            # buffers back)
            limit = 6 * 1024 * (4 if h.SANITIZE else 1)
            self.assertLess(per, limit, "RSS grew by %.0f bytes per idle TLS connection "
                            "(limit %d)" % (per, limit))
            log("ok: %d idle TLS connections cost %.0f bytes each (< %d)" % (n, per, limit))
        finally:
            for s in conns:
                try:
                    s.close()
                except OSError:
                    pass
        self.assert_dot_healthy("closing %d idle connections" % n)

    #: ../shared/TARGETS.md: RSS per idle DoT connection, 1,000 held, at most
    #: 16 KiB (dnsdist 21-23 KiB; dnsveil 65.8 KiB when it was written, about
    #: 4 KiB since TLS 1.3 connections run their own record layer)
    TARGET_IDLE_BYTES = 16 * 1024

    def test_7_idle_memory_target(self):
        """1,000 idle TLS connections held cost at most 16 KiB of RSS each
        (the target; test_7_idle_connections keeps the regression bound)."""
        n = 1000
        warm, errs = self._open_many(100, batch=100)
        self.assertEqual(errs, [])
        for s in warm:
            s.close()
        time.sleep(0.5)
        rss0 = h.rss_bytes(self.dv.pid)
        conns, errors = self._open_many(n)
        try:
            self.assertEqual((len(conns), errors), (n, []))
            time.sleep(1.0)
            per = (h.rss_bytes(self.dv.pid) - rss0) / float(n)
            log("%d idle TLS connections: %.0f bytes each (target %d)" % (
                n, per, self.TARGET_IDLE_BYTES))
            self.assertLessEqual(per, self.TARGET_IDLE_BYTES,
                                 "RSS per idle TLS connection (target, TARGETS.md)")
        finally:
            for s in conns:
                s.close()


# ====================================================================== bad input

class DotBadInput(DotBase):
    """8. Hostile or broken clients: each is cut off, counted, and a
    well-behaved client is still served."""

    READ_MS = 1000
    IDLE_BAD_MS = 3000
    HS_MS = 1000
    CAP = 20
    # the per-address cap always on (handshake-pressure 0), a bucket of CAP
    # refilled at CAP per second: at most CAP * (seconds + 1) get through
    limits = {"tcp-read-timeout-ms": READ_MS, "tcp-idle-timeout-ms": IDLE_BAD_MS,
              "tls-handshake-timeout-ms": HS_MS, "tls-handshakes-per-ip": CAP,
              "tls-handshake-burst": CAP, "handshake-pressure": 0}

    def _expect_closed(self, sock, what, within, at_least=0.0):
        dt, how, got = h.wait_closed(sock, within + 2.0)
        log("%s: connection ended after %.2fs (%s), %d bytes received" % (what, dt, how,
                                                                          len(got)))
        self.assertNotEqual(how, "timeout", "%s: dnsveil kept the connection open for %.1fs "
                            "(expected a close within %.1fs)" % (what, dt, within))
        self.assertLessEqual(dt, within, "%s: closed only after %.2fs (expected within %.1fs)"
                             % (what, dt, within))
        self.assertGreaterEqual(dt, at_least, "%s: closed after %.2fs, before the %.1fs "
                                "timeout" % (what, dt, at_least))
        return dt, how, got

    def _raw_garbage(self, payload, what):
        st0 = self.stats()
        s = h.tcp_connect(self.dv.tls_port)
        try:
            s.sendall(payload)
            _, _, got = self._expect_closed(s, what, h.scaled(3))
        finally:
            s.close()
        # only a TLS alert record may come back, never a DNS answer
        self.assertTrue(got == b"" or got[:1] == b"\x15",
                        "%s: unexpected bytes from the TLS port: %r" % (what, got[:40]))
        st1 = self.stats()
        d = h.stat_delta(st0, st1, ["tls_failed", "tcp_errors", "queries"])
        log("%s: stats delta %s" % (what, d))
        self.assertGreaterEqual(d["tls_failed"] + d["tcp_errors"], 1,
                                "%s: neither tls_failed nor tcp_errors counted: %s" % (what, d))
        self.assertEqual(d["queries"], 0, d)
        self.assert_dot_healthy(what)

    def test_plaintext_dns_on_tls_port(self):
        w = h.make_query("www.example.test").to_wire()
        self._raw_garbage(struct.pack("!H", len(w)) + w, "plaintext TCP DNS query on the TLS port")

    def test_http_get_on_tls_port(self):
        self._raw_garbage(b"GET /dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlBHRlc3QAAAEAAQ "
                          b"HTTP/1.1\r\nHost: dns.test\r\n\r\n", "HTTP GET on the TLS port")

    def test_truncated_length_prefix(self):
        st0 = self.stats()
        s = h.tls_connect(self.dv.tls_port)
        _, m = h.stream_query(s, h.make_query("www.example.test"))
        self.assertEqual(h.a_records(m), [WWW_ADDR])
        s.sendall(b"\x00")
        s.close()
        st1 = self.wait_stat(st0, "tcp_errors")
        log("1 byte of a length prefix then close: stats delta %s" % h.stat_delta(
            st0, st1, ["tcp_errors", "queries", "tcp_idle_closed"]))
        self.assert_dot_healthy("a truncated length prefix")

    def test_zero_length_message(self):
        st0 = self.stats()
        s = h.tls_connect(self.dv.tls_port)
        try:
            _, m = h.stream_query(s, h.make_query("www.example.test"))
            self.assertEqual(h.a_records(m), [WWW_ADDR])
            s.sendall(b"\x00\x00")
            self._expect_closed(s, "zero-length message (0x0000)", h.scaled(1.0))
        finally:
            s.close()
        st1 = self.stats()
        d = h.stat_delta(st0, st1, ["tcp_errors", "tcp_idle_closed", "queries", "formerr"])
        log("zero-length message: stats delta %s" % d)
        self.assertGreaterEqual(d["tcp_errors"], 1, d)
        self.assertEqual(d["tcp_idle_closed"], 0, d)
        self.assert_dot_healthy("a zero-length message")

    def test_oversized_length_slow_body(self):
        st0 = self.stats()
        s = h.tls_connect(self.dv.tls_port)
        t0 = time.monotonic()
        how = "timeout"
        sent = 0
        try:
            s.sendall(b"\xff\xff" + b"\x00" * 10)
            sent = 10
            deadline = t0 + h.scaled(6)
            while time.monotonic() < deadline:
                s.settimeout(0.2)
                try:
                    d = s.recv(100)
                    if not d:
                        how = "eof"
                        break
                except socket.timeout:
                    pass
                except (ssl.SSLError, ConnectionError) as e:
                    how = repr(e)
                    break
                try:
                    s.sendall(b"\x00" * 10)     # 50 bytes/s of a 65535-byte message
                    sent += 10
                except (ssl.SSLError, OSError) as e:
                    how = "send: %r" % e
                    break
        finally:
            s.close()
        dt = time.monotonic() - t0
        log("length 0xffff and a slow body (%d bytes): connection ended after %.2fs (%s)" % (
            sent, dt, how))
        self.assertNotEqual(how, "timeout", "dnsveil kept a 0xffff-byte message trickling "
                            "in for %.1fs (read timeout %d ms)" % (dt, self.READ_MS))
        self.assertGreaterEqual(dt, self.READ_MS / 1000.0 * 0.9, "closed before the read timeout")
        self.assertLess(dt, self.READ_MS / 1000.0 + h.scaled(1.0),
                        "closed after %.2fs, not at the read timeout (%d ms)" % (dt, self.READ_MS))
        st1 = self.stats()
        d = h.stat_delta(st0, st1, ["tcp_errors", "tcp_idle_closed", "queries"])
        log("stats delta %s" % d)
        self.assertGreaterEqual(d["tcp_errors"], 1, d)
        self.assertEqual(d["tcp_idle_closed"] + d["queries"], 0, d)
        self.assert_dot_healthy("a 0xffff length with a slow body")

    def test_idle_after_handshake(self):
        st0 = self.stats()
        s = h.tls_connect(self.dv.tls_port)
        try:
            self._expect_closed(s, "handshake then silence", self.IDLE_BAD_MS / 1000.0 +
                                h.scaled(1.0), at_least=self.IDLE_BAD_MS / 1000.0 * 0.9)
        finally:
            s.close()
        st1 = self.stats()
        d = h.stat_delta(st0, st1, ["tcp_idle_closed", "tcp_errors", "tls_handshakes"])
        log("stats delta %s" % d)
        self.assertEqual(d["tcp_idle_closed"], 1, "tcp_idle_closed must count the idle close: "
                         "%s" % d)
        self.assert_dot_healthy("an idle connection")

    def test_handshake_never_finishes(self):
        # TCP connect and silence
        st0 = self.stats()
        s = h.tcp_connect(self.dv.tls_port)
        try:
            self._expect_closed(s, "TCP connect, no ClientHello", self.HS_MS / 1000.0 +
                                h.scaled(1.0), at_least=self.HS_MS / 1000.0 * 0.9)
        finally:
            s.close()
        st1 = self.stats()
        d1 = h.stat_delta(st0, st1, ["tls_failed", "tcp_errors", "tcp_idle_closed"])
        log("no ClientHello: stats delta %s" % d1)

        # a ClientHello trickled one byte every 100 ms: the deadline counts
        # from the accept, not from the last byte
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = h.default_context().wrap_bio(inc, out, server_hostname=h.AUTH_NAME)
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        self.assertGreater(len(hello), 50)
        s = h.tcp_connect(self.dv.tls_port)
        t0 = time.monotonic()
        how = "timeout"
        try:
            for i in range(len(hello) - 1):
                if time.monotonic() - t0 > h.scaled(6):
                    break
                try:
                    s.sendall(hello[i:i + 1])
                except OSError as e:
                    how = "send: %r" % e
                    break
                r, _, _ = select.select([s], [], [], 0.1)
                if r:
                    try:
                        d = s.recv(100)
                    except OSError as e:
                        how = repr(e)
                        break
                    if not d:
                        how = "eof"
                        break
        finally:
            s.close()
        dt = time.monotonic() - t0
        log("ClientHello trickled at 10 bytes/s: ended after %.2fs (%s)" % (dt, how))
        self.assertNotEqual(how, "timeout", "a trickled handshake was kept for %.1fs" % dt)
        self.assertLess(dt, self.HS_MS / 1000.0 + h.scaled(1.0), "closed after %.2fs" % dt)
        st2 = self.stats()
        d2 = h.stat_delta(st1, st2, ["tls_failed", "tcp_errors", "tcp_idle_closed"])
        log("trickled ClientHello: stats delta %s" % d2)
        for what, d in (("silent", d1), ("trickled", d2)):
            self.assertEqual(d["tcp_idle_closed"], 0, "%s handshake: %s" % (what, d))
            self.assertGreaterEqual(d["tcp_errors"], 1, "%s handshake: %s" % (what, d))
        self.assert_dot_healthy("handshakes that never finish")
        # stats.h: tls_failed = "TLS handshakes that failed or timed out"
        for what, d in (("silent", d1), ("trickled", d2)):
            self.assertGreaterEqual(d["tls_failed"], 1, "a %s handshake closed at the "
                                    "handshake timeout must count in tls_failed (\"TLS "
                                    "handshakes that failed or timed out\", src/core/stats.h): %s"
                                    % (what, d))

    def test_client_never_reads(self):
        """Many queries with ~3 KB answers, never reading: dnsveil stops
        reading (tcp-max-output-bytes, tcp-max-inflight) and its memory
        stays bounded."""
        n = 20000
        q = h.make_query("big.example.test", "TXT").to_wire()
        frame = struct.pack("!H", len(q)) + q
        # warm the cache and the code path
        s = h.tls_connect(self.dv.tls_port)
        _, m = h.stream_query(s, h.make_query("big.example.test", "TXT"))
        self.assertGreater(len(m.to_wire()), 3000)
        s.close()
        time.sleep(0.3)
        st0 = self.stats()
        rss0 = h.rss_bytes(self.dv.pid)
        s = h.tls_connect(self.dv.tls_port, rcvbuf=65536)
        sent = 0
        t0 = time.monotonic()
        try:
            s.settimeout(1.0)
            while sent < n and time.monotonic() - t0 < h.scaled(8):
                try:
                    s.sendall(frame * 100)
                except (socket.timeout, ssl.SSLError, OSError) as e:
                    log("sending stopped: %r" % e)
                    break
                sent += 100
            time.sleep(1.0)
            rss1 = h.rss_bytes(self.dv.pid)
            st1 = self.stats()
            alive_during = self.dv.alive()
        finally:
            s.close()
        d = h.stat_delta(st0, st1, ["queries", "answers", "tcp_errors"])
        growth = rss1 - rss0
        log("sent %d queries for a ~3.1 KB answer each in %.1fs without reading; dnsveil "
            "accepted %d; RSS %.1f MiB -> %.1f MiB (+%.0f KiB)" % (
                sent, time.monotonic() - t0, d["queries"], rss0 / 2**20, rss1 / 2**20,
                growth / 1024.0))
        self.assertTrue(alive_during, "dnsveil died under a client that never reads")
        self.assertGreater(sent, 1000, "could not even send 1000 queries")
        self.assertLess(d["queries"], sent / 2, "dnsveil kept reading from a client that "
                        "never reads: %d of %d queries accepted" % (d["queries"], sent))
        limit = (64 if h.SANITIZE else 16) * 2**20
        self.assertLess(growth, limit, "RSS grew by %.1f MiB for one client that never reads"
                        % (growth / 2**20))
        self.assert_dot_healthy("a client that never reads")

    def test_handshake_flood(self):
        # an established client, before the flood
        est = h.tls_connect(self.dv.tls_port)
        try:
            _, m = h.stream_query(est, h.make_query("www.example.test"))
            self.assertEqual(h.a_records(m), [WWW_ADDR])
            time.sleep(1.1)        # a fresh per-second budget
            st0 = self.stats()
            flood = 200
            socks = []
            t0 = time.monotonic()
            for _ in range(flood):
                socks.append(h.tcp_connect(self.dv.tls_port, timeout=h.scaled(5)))
            t_conn = time.monotonic() - t0

            def hs(sock):
                try:
                    t = h.default_context().wrap_socket(sock, server_hostname=h.AUTH_NAME)
                    t.close()
                    return True
                except (OSError, ssl.SSLError):
                    sock.close()
                    return False
            with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
                ok = sum(ex.map(hs, socks))
            t_all = time.monotonic() - t0
            # during the flood window, the established connection is served
            # and another address is not affected by 127.0.0.1's budget
            answers = 0
            for i in range(5):
                _, m = h.stream_query(est, h.make_query("h%d.example.test" % i))
                self.assertEqual(h.a_records(m), [h.host_addr(i)], str(m))
                answers += 1
            other = h.tls_connect(self.dv.tls_port, source="127.0.0.2")
            try:
                _, m = h.stream_query(other, h.make_query("mail.example.test"))
            finally:
                other.close()
            self.assertEqual(h.a_records(m), ["192.0.2.25"])
            st1 = self.stats()
        finally:
            est.close()
        d = h.stat_delta(st0, st1, ["tls_rate_limited", "tls_handshakes", "tcp_refused",
                                     "tcp_connections", "tls_failed"])
        # each worker allows a burst of ceil(CAP / workers) and as many
        # again per second: CAP * (t_all + 1) <= CAP * (int(t_all) + 2)
        seconds = int(t_all) + 2
        allowed = -(-self.CAP // self.workers) * self.workers * seconds
        log("handshake flood: %d connects in %.2fs (all handshakes done in %.2fs): %d "
            "handshakes succeeded, stats delta %s (allowed at most %d)" % (
                flood, t_conn, t_all, ok, d, allowed))
        self.assertGreaterEqual(d["tls_rate_limited"], flood - allowed,
                                "tls_rate_limited must count the refused flood: %s" % d)
        self.assertLessEqual(ok, allowed, "%d of %d flood handshakes succeeded with "
                             "tls-handshakes-per-ip %d" % (ok, flood, self.CAP))
        self.assertLessEqual(ok + d["tls_rate_limited"], flood, d)
        if t_all < self.HS_MS / 1000.0 * 0.8:
            # no flood handshake can have hit the handshake timeout
            self.assertEqual(ok + d["tls_rate_limited"], flood,
                             "every flood connection is either served or refused: ok %d, %s"
                             % (ok, d))
        log("ok: flood refused (%d rate-limited), the established connection answered %d "
            "queries during it, 127.0.0.2 unaffected" % (d["tls_rate_limited"], answers))
        time.sleep(1.1)
        self.assert_dot_healthy("a handshake flood")


# ====================================================================== reload

class DotReload(DotBase):
    """10. SIGHUP loads a new certificate for new connections; established
    ones keep theirs; a broken key is refused and the old pair stays."""

    def setUp(self):
        h.IntegrationTest.setUp(self)
        self.private_pki("dv-dot-pki-")
        self.ub = self.start_unbound(log_queries=False)
        self.dv = self.start_dot(config=h.dot_config(cert=self.cert, key=self.key))

    def _replace(self, path, data):
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(data)
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)

    def _hup(self, pattern):
        off = len(self.dv.stderr_text())
        self.dv.proc.send_signal(signal.SIGHUP)
        m = self.dv.wait_log(pattern, start=off)
        line = self.dv.stderr_text()[off:]
        log("after SIGHUP, dnsveil logged:\n" + line.strip())
        return m

    def _peer(self, cafile):
        rc, out = h.s_client(self.dv.tls_port, "-showcerts", "-CAfile", cafile,
                              "-verify_return_error")
        subj = re.findall(r"^\s*(\d) s:(.*)$", out, re.M)
        iss = re.findall(r"^\s*i:(.*)$", out, re.M)
        return rc, out, subj, iss

    def test_10_sighup_reload(self):
        port = self.dv.tls_port
        old = h.tls_connect(port)
        try:
            _, m = h.stream_query(old, h.make_query("www.example.test"))
            self.assertEqual(h.a_records(m), [WWW_ADDR])
            rc, out, subj, iss = self._peer(h.CA)
            self.assertEqual(rc, 0, out)
            log("before: subject %s, issuer %s" % (subj, iss[:1]))

            ca2 = h.make_ca(self.pki, "ca2", "dnsveil second test CA")
            chain2, key2 = h.make_leaf(self.pki, "leaf2", "ca2")
            self._replace(self.cert, h.read_text(chain2))
            self._replace(self.key, h.read_text(key2))
            self._hup(r"TLS certificate .* reloaded|TLS reload refused")
            self.assertNotIn("TLS reload refused", self.dv.stderr_text(),
                             "a valid new pair was refused")

            rc, out, subj, iss = self._peer(ca2)
            log("after reload: s_client rc %d, subjects %s, issuers %s" % (rc, subj, iss))
            self.assertEqual(rc, 0, "new connections must verify with the second CA:\n" + out)
            self.assertTrue(iss and "dnsveil second test CA" in iss[0],
                            "new connection's leaf issuer: %s\n%s" % (iss, out))
            self.assertEqual(len(h.pem_certs(out)), 2, "the new chain is sent whole")
            rc, out, _, _ = self._peer(h.CA)
            self.assertNotEqual(rc, 0, "the first CA must no longer verify new connections:\n"
                                + out)
            ctx2 = h.client_context(cafile=ca2)
            s = h.tls_connect(port, ctx=ctx2)
            try:
                _, m = h.stream_query(s, h.make_query("mail.example.test"))
            finally:
                s.close()
            self.assertEqual(h.a_records(m), ["192.0.2.25"])
            r = h.kdig_tls(port, [WWW], ca=ca2)
            self.assertEqual(h.kdig_answers(r), [("www.example.test.", [WWW_ADDR])], repr(r))
            log("ok: after SIGHUP new connections get the second certificate")

            _, m = h.stream_query(old, h.make_query("h5.example.test"))
            self.assertEqual(h.a_records(m), [h.host_addr(5)],
                             "the connection opened before the reload: %s" % m)
            log("ok: the connection opened before the reload still answers")

            # garbage key: refused, the second pair stays in service
            self._replace(self.key, "this is not a PEM private key\n")
            self._hup(r"TLS reload refused|TLS certificate .* reloaded")
            self.assertRegex(self.dv.stderr_text(), r"TLS reload refused",
                             "a garbage key must be refused")
            self.assertTrue(self.dv.alive())
            rc, out, subj, iss = self._peer(ca2)
            self.assertEqual(rc, 0, "after a refused reload new connections must still get the "
                             "second certificate:\n" + out)
            self.assertTrue(iss and "dnsveil second test CA" in iss[0], iss)
            r = h.kdig_tls(port, [WWW], ca=ca2)
            self.assertEqual(h.kdig_answers(r), [("www.example.test.", [WWW_ADDR])], repr(r))
            _, m = h.stream_query(old, h.make_query("h6.example.test"))
            self.assertEqual(h.a_records(m), [h.host_addr(6)])
            log("ok: a reload with a garbage key is refused; new connections keep the second "
                "certificate, the old connection still answers")
        finally:
            old.close()

    def test_10b_sighup_mismatched_key(self):
        """A well-formed key that belongs to another certificate must be
        refused like a garbage one (tls.h: "on failure the old certificate
        stays in service"): accepting it would make every new handshake
        fail its CertificateVerify."""
        ca2 = h.make_ca(self.pki, "ca2", "dnsveil second test CA")
        chain2, key2 = h.make_leaf(self.pki, "leaf2", "ca2")
        self._replace(self.cert, h.read_text(chain2))
        self._replace(self.key, h.read_text(key2))
        self._hup(r"TLS certificate .* reloaded|TLS reload refused")
        rc, out, subj, iss = self._peer(ca2)
        self.assertEqual(rc, 0, out)
        # the key of the first (dev) certificate with the second certificate
        self._replace(self.key, h.read_text(h.KEY))
        off = len(self.dv.stderr_text())
        self._hup(r"TLS reload refused|TLS certificate .* reloaded")
        logged = self.dv.stderr_text()[off:]
        rc, out, subj, iss = self._peer(ca2)
        errs = "; ".join(x for x in out.splitlines() if "error" in x or "alert" in x)
        log("after a reload with a mismatched key: s_client rc %d (%s)" % (rc, errs))
        self.assertRegex(logged, r"TLS reload refused", "a key that does not match tls.cert "
                         "must be refused on SIGHUP; dnsveil logged:\n%s\nand new handshakes "
                         "now give: rc %d, %s" % (logged.strip(), rc, errs))
        self.assertEqual(rc, 0, "after a refused reload new connections must still work:\n"
                         + out)
        self.assertTrue(iss and "dnsveil second test CA" in iss[0], iss)
        r = h.kdig_tls(self.dv.tls_port, [WWW], ca=ca2)
        self.assertEqual(h.kdig_answers(r), [("www.example.test.", [WWW_ADDR])], repr(r))
        log("ok: a mismatched key is refused and the second certificate stays in service")


if __name__ == "__main__":
    h.main()
