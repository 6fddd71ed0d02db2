#!/usr/bin/python3
"""DNS over QUIC (RFC 9250): dnsveil's quic:// listener driven by the
project's own DoQ client (dnsveil-doq; Debian 12 packages none) and by raw
UDP datagrams: answers, thousands of queries on one connection (stream
credit given back), resumption and 0-RTT, Retry and NEW_TOKEN, padding,
bounded streams and connections, connection migration across workers, and
every bad-input case (wrong message id, garbage on a stream, a stream that
ends inside a message or never finishes, two messages on a stream, a reset
stream, the wrong ALPN, random datagrams, truncated Initials) — each gets
its own error and nothing else is disturbed.

dnsveil listens on dns://127.0.0.1:PORT (what the harness polls) and
quic://127.0.0.1:QUIC_PORT with certs/dev-cert.pem (dns.test)."""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

h.ensure_dev_certs()

WWW = "www.example.test"
WWW_ADDR = "192.0.2.1"
PAD_BLOCK = 468
DOQ_PROTOCOL_ERROR = 2
DOQ_REQUEST_CANCELLED = 3


class DoqBase(h.IntegrationTest):
    workers = 2
    doq = {}
    limits = {}
    ipv6 = False

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        self.dv = self.start_doq()
        self.tmp = tempfile.mkdtemp(prefix="dv-doq-")

    def start_doq(self, doq=None, limits=None, workers=None):
        d = h.Dnsveil(listen=["dns", "quic"], upstream=[self.ub], workers=workers or self.workers,
                       config=h.doq_config(dict(self.doq, **(doq or {})),
                                         dict(self.limits, **(limits or {}))),
                       ipv6=self.ipv6, name="doq")
        self._dnsveils.append(d)
        return d.start()

    def assert_answered(self, r, n=1):
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.summary["answers"], n, r)
        for a in r.answers[:50]:
            self.assertEqual(a["rcode"], "NOERROR", a)
            self.assertEqual(a["id"], 0, "DoQ answers carry id 0: %s" % a)

    def assert_healthy(self, what):
        self.assertTrue(self.dv.alive(), "dnsveil died after %s:\n%s" % (
            what, h.tail(self.dv.stderr_path)))
        r = self.dv.doq()
        self.assert_answered(r)
        self.assertIn(WWW_ADDR, json.dumps(r.answers[0]["answers"]), r.answers[0])

    def peer_close(self, r):
        c = r.close()
        self.assertIsNotNone(c, r)
        self.assertEqual(c.get("by"), "peer", "dnsveil should have closed: %r" % r)
        return c


class DoqAnswers(DoqBase):
    # what test_answer_ipv6 tests must be there: a machine without ::1
    # fails it rather than skipping it
    ipv6 = True

    def test_answer(self):
        r = self.dv.doq()
        self.assert_answered(r)
        a = r.answers[0]
        self.assertEqual(a["stream_id"], 0, a)
        self.assertIn(WWW_ADDR, json.dumps(a["answers"]), a)
        self.assertTrue(r.conns[0]["new_token_received"], "NEW_TOKEN after the handshake: %s" % r.conns[0])
        log("ok: %s A -> %s over DoQ, handshake %.1f ms" % (WWW, WWW_ADDR, r.summary["handshake_ms"]))

    def test_answer_ipv6(self):
        self.assertTrue(h.have_ipv6_loopback(), "no ::1 on this machine")
        r = h.Doq(self.dv.quic_port, [], host="::1")
        self.assert_answered(r)
        log("ok: answered over quic://[::1]")

    def test_wrong_name_refused_by_client(self):
        r = h.Doq(self.dv.quic_port, ["--name", "wrong.test", "--ca", h.CA], trust=False)
        self.assertNotEqual(r.rc, 0, r)
        self.assertEqual(r.summary["answers"], 0, r)
        self.assert_healthy("a client that refused the certificate")
        log("ok: a client checking for wrong.test refuses dnsveil's dns.test certificate")

    def test_several_questions_and_types(self):
        r = self.dv.doq(names=(WWW, "A", "mail.example.test", "A", "nx.example.test", "A",
                               "example.test", "SOA"))
        self.assertEqual(r.summary["answers"], 4, r)
        rc = sorted(a["rcode"] for a in r.answers)
        self.assertEqual(rc, ["NOERROR", "NOERROR", "NOERROR", "NXDOMAIN"], r.answers)
        ids = sorted(a["stream_id"] for a in r.answers)
        self.assertEqual(ids, [0, 4, 8, 12], "one client bidi stream per query: %s" % ids)
        log("ok: 4 questions on streams %s" % ids)

    def test_padding(self):
        r = self.dv.doq("--pad")
        self.assert_answered(r)
        a = r.answers[0]
        self.assertTrue(a["padding"], "a padded query gets a padded answer: %s" % a)
        self.assertEqual(a["size"] % PAD_BLOCK, 0, "answer padded to a multiple of 468: %s" % a)
        r = self.dv.doq()
        self.assertFalse(r.answers[0]["padding"], "no padding unless asked: %s" % r.answers[0])
        log("ok: padded query -> %d-byte answer; unpadded query -> %d bytes" % (
            a["size"], r.answers[0]["size"]))


class DoqLongLived(DoqBase):
    doq = {"max-streams": 50}

    def test_many_queries_one_connection(self):
        st0 = self.dv.stats()
        n = int(3000 / h.SCALE)
        r = self.dv.doq("-q", "--count", str(n), "--concurrency", "200",
                        names=(WWW, "A", "mail.example.test", "A"))
        self.assert_answered(r, 2 * n)
        self.assertEqual(r.summary["connections"], 1, r)
        self.assertEqual(r.summary["streams_opened"], 2 * n, r)
        self.assertGreater(2 * n, 1024)
        # with 200 wanted in flight and a credit of 50, the client waited
        # for credit, which dnsveil gave back stream by stream
        self.assertTrue(r.conns[0]["credit_waits"], "the client had to wait for credit: %s" % r.conns[0])
        self.assertGreaterEqual(r.conns[0]["max_streams"], 2 * n, r.conns[0])
        st1 = self.dv.stats()
        self.assertEqual(st1["doq_connections"] - st0["doq_connections"], 1)
        self.assertGreaterEqual(st1["doq_streams"] - st0["doq_streams"], 2 * n)
        log("ok: %d queries on one connection with a credit of 50 streams, p99 %.2f ms, %.0f qps" % (
            2 * n, r.summary["latency_ms"]["p99"], r.summary["qps"]))

    def test_bounded_concurrency(self):
        # a slow authority keeps every query in flight: the client may never
        # have more than the credit (50) open at once; all are answered
        slow = self.start_slow(delay=0.3)
        ub = self.start_unbound(slow=slow, log_queries=False)
        dv = h.Dnsveil(listen=["dns", "quic"],
                       upstream=[ub], workers=1, config=h.doq_config(dict(self.doq)),
                       name="doq-slow")
        self._dnsveils.append(dv)
        dv.start()
        names = []
        for i in range(60):
            names += ["n%d.%s" % (i, h.SLOW_ZONE), "A"]
        st0 = dv.stats()
        r = dv.doq("-q", "--concurrency", "500", "--count", "2", "-t", "20", names=names)
        self.assertEqual(r.summary["answers"], 120, r)
        self.assertTrue(r.conns[0]["credit_waits"], r.conns[0])
        # opening more than the credit would have been a STREAM_LIMIT_ERROR
        self.assertEqual(r.close(), {"by": "us"}, r)
        self.assertEqual(dv.stats()["doq_streams"] - st0["doq_streams"], 120)
        log("ok: 120 slow queries with 500 wanted in flight: the client waited for credit (50)")


class DoqResumption(DoqBase):
    doq = {"early-data": "true"}

    def test_resumption_and_0rtt(self):
        sess = os.path.join(self.tmp, "s.bin")
        st0 = self.dv.stats()
        r1 = self.dv.doq("--session", sess)
        self.assert_answered(r1)
        self.assertFalse(r1.summary["resumed"], r1)
        self.assertTrue(os.path.getsize(sess) > 0, "session saved")
        r2 = self.dv.doq("--session", sess)
        self.assert_answered(r2)
        self.assertTrue(r2.summary["resumed"], "second connection resumes: %s" % r2)
        r3 = self.dv.doq("--session", sess, "--early")
        self.assert_answered(r3)
        ed = r3.summary["early_data"]
        self.assertTrue(ed["attempted"] and ed["sent"] >= 1 and ed["accepted"], r3)
        st1 = self.dv.stats()
        self.assertGreaterEqual(st1["doq_resumed"] - st0["doq_resumed"], 2)
        self.assertGreaterEqual(st1["doq_early_data"] - st0["doq_early_data"], 1)
        log("ok: resumed, then 0-RTT query accepted and answered (%s)" % ed)

    def test_0rtt_only_query(self):
        # a NOTIFY (opcode 4) in 0-RTT is a protocol error (RFC 9250 4.5)
        sess = os.path.join(self.tmp, "s2.bin")
        self.assert_answered(self.dv.doq("--session", sess))
        notify = "000024000001000000000000076578616d706c6504746573740000060001"
        framed = "%04x%s" % (len(notify) // 2, notify)
        st0 = self.dv.stats()
        r = self.dv.doq("--session", sess, "--early", "--raw", framed, names=())
        self.assertTrue(r.summary["early_data"]["sent"] >= 1, r)
        self.assertEqual(r.summary["answers"], 0, r)
        c = self.peer_close(r)
        # closed before the handshake is confirmed, an application error
        # travels as the transport error APPLICATION_ERROR (RFC 9000 10.2.3)
        self.assertIn((c.get("kind"), c.get("code")),
                      (("application", DOQ_PROTOCOL_ERROR), ("transport", 0xc)), r)
        self.assertEqual(self.dv.stats()["doq_protocol_errors"] - st0["doq_protocol_errors"], 1)
        self.assert_healthy("NOTIFY in 0-RTT")
        log("ok: NOTIFY in 0-RTT -> DOQ_PROTOCOL_ERROR (%s)" % c.get("reason"))


class DoqNoEarlyData(DoqBase):
    def test_0rtt_refused_when_disabled(self):
        sess = os.path.join(self.tmp, "s.bin")
        self.assert_answered(self.dv.doq("--session", sess))
        r = self.dv.doq("--session", sess, "--early")
        self.assert_answered(r)
        self.assertTrue(r.summary["resumed"], r)
        self.assertFalse(r.summary["early_data"]["accepted"], "0-RTT must not be accepted: %s" % r)
        log("ok: early-data false: resumed without 0-RTT (%s), query answered after the handshake" % (
            r.summary["early_data"]))


class DoqRetry(DoqBase):
    doq = {"retry": "always"}

    def test_retry_then_token(self):
        tok = os.path.join(self.tmp, "tok.bin")
        st0 = self.dv.stats()
        r1 = self.dv.doq("--token", tok)
        self.assert_answered(r1)
        self.assertTrue(r1.summary["retry_received"], "retry: always -> a Retry first: %s" % r1)
        self.assertTrue(r1.summary["new_token_received"], r1)
        r2 = self.dv.doq("--token", tok)
        self.assert_answered(r2)
        self.assertFalse(r2.summary["retry_received"], "a NEW_TOKEN token skips Retry: %s" % r2)
        st1 = self.dv.stats()
        self.assertEqual(st1["doq_retries"] - st0["doq_retries"], 1)
        self.assertGreaterEqual(st1["doq_token_ok"] - st0["doq_token_ok"], 2)  # retry token + NEW_TOKEN
        # a forged token is no token: Retry again
        with open(tok, "r+b") as f:
            data = bytearray(f.read())
            data[len(data) // 2] ^= 0xff
            f.seek(0)
            f.write(data)
        r3 = self.dv.doq("--token", tok)
        self.assert_answered(r3)
        self.assertTrue(r3.summary["retry_received"], r3)
        self.assertGreaterEqual(self.dv.stats()["doq_token_bad"] - st1["doq_token_bad"], 1)
        log("ok: Retry, then NEW_TOKEN skipped it, then a forged token got a Retry again")


class DoqFailureLog(DoqBase):
    """Failed handshakes and connection-level protocol errors leave a debug
    line naming the client and why (they left none), at most 10 a second
    per worker, then a line saying how many were left out."""
    workers = 1

    def start_doq(self, doq=None, limits=None, workers=None):
        d = h.Dnsveil(listen=["dns", "quic"], upstream=[self.ub], workers=1,
                       config=dict(h.doq_config(), **{"log-level": "debug"}), name="doq")
        self._dnsveils.append(d)
        return d.start()

    def lines(self):
        # the failure lines; a completed handshake has its own line
        # ("...: sni NAME, alpn doq"), written from a budget of its own
        return [x for x in self.dv.stderr_text().splitlines()
                if "quic: worker 0:" in x and ": sni " not in x]

    def test_failures_logged(self):
        r = self.dv.doq("--alpn", "h3")
        self.assertEqual(r.summary["answers"], 0, r)
        r = self.dv.doq("--two-messages")
        self.assertEqual(r.summary["answers"], 0, r)
        h.wait_for(lambda: len(self.lines()) >= 2, h.scaled(5), what="two failure lines")
        got = self.lines()
        log("\n".join(got))
        self.assertRegex(got[0], r"connection from 127\.0\.0\.1:\d+ failed its handshake: "
                         r"TLS alert 120 \(No supported application protocol")
        self.assertRegex(got[1], r"connection from 127\.0\.0\.1:\d+ closed with "
                         r"DOQ_PROTOCOL_ERROR: more than one message on a stream")
        # a burst of failing clients: the log stays bounded
        t0 = time.monotonic()
        procs = [subprocess.Popen([h.doq_binary(), "-k", "--alpn", "h3", "-t", "2",
                                   "127.0.0.1:%d" % self.dv.quic_port, WWW],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(40)]
        for p in procs:
            p.wait(timeout=h.scaled(30))
        burst_s = time.monotonic() - t0
        time.sleep(1.2)
        self.dv.doq("--alpn", "h3")  # the next second's first line reports the rest
        h.wait_for(lambda: any("not logged" in x for x in self.lines()), h.scaled(5),
                   what="the line saying how many were left out")
        rest = self.lines()[2:]
        logged = sum(1 for x in rest if "failed its handshake" in x)
        left_out = sum(int(re.search(r"(\d+) more failed", x).group(1))
                       for x in rest if "not logged" in x)
        log("41 failed handshakes in %.1f s (+1.2 s): %d logged, %d counted as left out"
            % (burst_s, logged, left_out))
        self.assertEqual(logged + left_out, 41)
        # 10 a second (the rate windows follow dnsveil's clock, not the
        # log's timestamps)
        self.assertLessEqual(logged, 10 * (int(burst_s) + 2) + 1)
        self.assertGreater(left_out, 0)
        self.assert_healthy("failing clients")


class DoqBadInput(DoqBase):
    limits = {"tcp-read-timeout-ms": 1000}

    def protocol_error(self, what, *args, names=(WWW, "A"), reason=None):
        st0 = self.dv.stats()
        r = self.dv.doq(*args, names=names)
        self.assertEqual(r.summary["answers"], 0, "%s answered: %s" % (what, r))
        c = self.peer_close(r)
        self.assertEqual((c.get("kind"), c.get("code")), ("application", DOQ_PROTOCOL_ERROR),
                         "%s: %r" % (what, r))
        if reason:
            self.assertIn(reason, c.get("reason", ""), r)
        self.assertEqual(self.dv.stats()["doq_protocol_errors"] - st0["doq_protocol_errors"], 1)
        self.assert_healthy(what)
        log("ok: %s -> DOQ_PROTOCOL_ERROR (%s)" % (what, c.get("reason")))

    def test_nonzero_id(self):
        self.protocol_error("message id 4660", "--id", "4660", reason="id")

    def test_garbage_on_stream(self):
        self.protocol_error("garbage bytes", "--raw", "deadbeef00112233", names=())

    def test_stream_ends_inside_message(self):
        self.protocol_error("a stream ending inside its message", "--partial", reason="inside")

    def test_two_messages(self):
        self.protocol_error("two messages on one stream", "--two-messages", reason="one message")

    def test_not_a_query(self):
        # a DNS response (QR set), framed, id 0
        resp = "000081800001000000000000036e7874000001" + "0001"
        self.protocol_error("a response sent as a query", "--raw", "%04x%s" % (len(resp) // 2, resp),
                            names=())

    def test_keepalive_option(self):
        # RFC 9250 5.5.2: edns-tcp-keepalive must not be used over QUIC
        q = ("0000010000010000000000010377777707" + "6578616d706c65047465737400" + "00010001"
             + "0000290200000000000004000b0000")
        self.protocol_error("edns-tcp-keepalive", "--raw", "%04x%s" % (len(q) // 2, q), names=(),
                            reason="keepalive")

    def test_no_fin_is_answered(self):
        r = self.dv.doq("--no-fin")
        self.assert_answered(r)
        log("ok: a query without FIN is answered once whole")

    def test_stream_that_never_finishes(self):
        st0 = self.dv.stats()
        r = self.dv.doq("--partial", "--no-fin", "-t", str(h.scaled(6)))
        self.assertEqual(r.summary["answers"], 0, r)
        self.assertEqual(len(r.errors), 1, r)
        e = r.errors[0]
        self.assertEqual((e["kind"], e.get("app_error_code")), ("stream_reset", DOQ_REQUEST_CANCELLED), e)
        self.assertEqual(self.dv.stats()["doq_stream_timeouts"] - st0["doq_stream_timeouts"], 1)
        self.assert_healthy("a stream that never finished")
        log("ok: an unfinished query stream is reset with DOQ_REQUEST_CANCELLED after the read timeout")

    def test_reset_stream_cancels_query(self):
        # the answer takes 1 s (slow authority); the client resets its stream
        # after 100 ms: the query is cancelled and nothing is sent back on it
        slow = self.start_slow(delay=1.0)
        ub = self.start_unbound(slow=slow, log_queries=False)
        dv = h.Dnsveil(listen=["dns", "quic"],
                       upstream=[ub], workers=1, config=h.doq_config(), name="doq-cancel")
        self._dnsveils.append(dv)
        dv.start()
        st0 = dv.stats()
        r = dv.doq("--reset-after-ms", "100", "--hold", str(h.scaled(2)),
                   names=("c1.%s" % h.SLOW_ZONE, "A"))
        self.assertEqual(r.summary["answers"], 0, r)
        h.wait_for(lambda: dv.stats()["doq_cancelled"] - st0["doq_cancelled"] >= 1, h.scaled(5),
                   what="doq_cancelled to count the reset stream")
        self.assertTrue(dv.alive())
        r = dv.doq(names=("c1.%s" % h.SLOW_ZONE, "A"))
        self.assert_answered(r)
        log("ok: a reset stream cancels its query (doq_cancelled), dnsveil answers the next one")

    def test_wrong_alpn(self):
        r = h.Doq(self.dv.quic_port, ["--alpn", "h3"])
        self.assertEqual(r.summary["answers"], 0, r)
        c = r.close() or {}
        self.assertIn("no_application_protocol", json.dumps(r.lines), r)
        self.assert_healthy("a client offering ALPN h3 (%s)" % c)
        log("ok: ALPN h3 -> no_application_protocol")

    def test_random_datagrams_and_truncated_initials(self):
        st0 = self.dv.stats()
        initial = self.capture_initial()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        addr = ("127.0.0.1", self.dv.quic_port)
        rnd = __import__("random").Random(7)
        sent = 0
        for i in range(600):
            size = rnd.choice((1, 5, 20, 100, 1199, 1200, 1350, 1500))
            s.sendto(bytes(rnd.getrandbits(8) for _ in range(size)), addr)
            sent += 1
        for cut in (1, 5, 7, 20, 40, 100, 300, 600, 1000, len(initial) - 1):
            s.sendto(initial[:cut], addr)
            sent += 1
        # a whole Initial with its payload flipped: decrypts to nothing
        bad = bytearray(initial)
        for i in range(60, len(bad), 7):
            bad[i] ^= 0x5a
        for _ in range(20):
            s.sendto(bytes(bad), addr)
            sent += 1
        s.close()
        self.assert_healthy("%d hostile datagrams" % sent)
        st1 = self.dv.stats()
        self.assertGreater(st1["doq_bad_packets"] - st0["doq_bad_packets"], 0)
        self.assertEqual(st1["doq_handshakes"] - st0["doq_handshakes"], 1,
                         "only the health check completed a handshake")
        # no state was kept for any of them: the only connections made
        # are the health check's
        log("ok: %d random/truncated/corrupt datagrams: %d counted bad, dnsveil answers" % (
            sent, st1["doq_bad_packets"] - st0["doq_bad_packets"]))

    def capture_initial(self):
        """The first datagram dnsveil-doq sends (a real client Initial)."""
        srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        srv.bind(("127.0.0.1", 0))
        srv.settimeout(h.scaled(5))
        port = srv.getsockname()[1]
        t = threading.Thread(target=lambda: subprocess.run(
            [h.doq_binary(), "-k", "-t", "1", "127.0.0.1:%d" % port, WWW],
            capture_output=True, timeout=30))
        t.start()
        try:
            data, _ = srv.recvfrom(4096)
        finally:
            t.join()
            srv.close()
        self.assertGreaterEqual(len(data), 1200, "a client Initial is padded to 1200 bytes")
        self.assertTrue(data[0] & 0x80, "long header")
        return data


class DoqLimits(DoqBase):
    doq = {"max-connections": 2, "idle-timeout-ms": 1000}
    workers = 1

    def test_idle_connection_evicted_at_limit(self):
        # two idle connections fill max-connections: a third client gets in,
        # and the least recently active idle one is closed with
        # DOQ_EXCESSIVE_LOAD (0x4)
        st0 = self.dv.stats()
        held = []
        threads = [threading.Thread(target=lambda: held.append(self.dv.doq("--hold", str(h.scaled(3)))))
                   for _ in range(2)]
        for t in threads:
            t.start()
        h.wait_for(lambda: self.dv.stats()["doq_handshakes"] - st0["doq_handshakes"] >= 2,
                   h.scaled(5), what="two connections held")
        r = self.dv.doq()
        self.assert_answered(r)
        for t in threads:
            t.join()
        closes = [x.close() for x in held]
        evicted = [c for c in closes if c.get("by") == "peer" and c.get("code") == 4]
        self.assertEqual(len(evicted), 1, "one held connection closed with DOQ_EXCESSIVE_LOAD: %s" % closes)
        self.assertEqual(self.dv.stats()["doq_evicted"] - st0["doq_evicted"], 1)
        log("ok: at max-connections 2 a new client evicts an idle one (%s)" % evicted[0])

    def test_busy_connections_refuse_new_ones(self):
        # two connections each with a query in flight (1 s authority) cannot
        # be evicted: a third connection is refused (CONNECTION_REFUSED)
        slow = self.start_slow(delay=1.0)
        ub = self.start_unbound(slow=slow, log_queries=False)
        # (QUIC's idle timeout runs while a query waits: longer than the
        # authority's delay here)
        dv = h.Dnsveil(listen=["dns", "quic"], upstream=[ub], workers=1, name="doq-busy",
                        config=h.doq_config(dict(self.doq, **{"idle-timeout-ms": 10000})))
        self._dnsveils.append(dv)
        dv.start()
        st0 = dv.stats()
        out = []
        threads = [threading.Thread(target=lambda i=i: out.append(dv.doq(
            "-t", str(h.scaled(5)), names=("b%d.%s" % (i, h.SLOW_ZONE), "A")))) for i in range(2)]
        for t in threads:
            t.start()
        h.wait_for(lambda: dv.stats()["doq_streams"] - st0["doq_streams"] >= 2, h.scaled(5),
                   what="two queries in flight")
        r = dv.doq("-t", "2")
        self.assertEqual(r.summary["answers"], 0, "a third connection must be refused: %s" % r)
        self.assertIn("CONNECTION_REFUSED", json.dumps(r.lines), r)
        for t in threads:
            t.join()
        for x in out:
            self.assert_answered(x)
        self.assertGreaterEqual(dv.stats()["doq_refused"] - st0["doq_refused"], 1)
        log("ok: max-connections 2 with both busy: a third is refused, the two are answered")

    def test_idle_timeout(self):
        st0 = self.dv.stats()
        r = self.dv.doq("--hold", str(h.scaled(3)))
        self.assert_answered(r)
        c = r.close() or {}
        self.assertEqual(c.get("by"), "idle", r)
        self.assertGreaterEqual(self.dv.stats()["doq_idle_closed"] - st0["doq_idle_closed"], 1)
        log("ok: an idle connection is closed after doq.idle-timeout-ms (%s)" % c)


class DoqIdleMemory(DoqBase):
    """Idle DoQ connections cost little memory while they are held, and
    give it back when they close: hundreds of dnsveil-doq connections (one
    query each, then held idle) opened in batches on one worker; dnsveil's
    RSS before, while they are held and after they closed."""
    workers = 1
    N = int(600 / h.SCALE)
    BATCH = 50
    doq = {"max-connections": 2048, "max-handshakes": 256, "max-handshakes-per-address": 256,
           "idle-timeout-ms": 120000}
    limits = {"tls-handshakes-per-ip": 0}

    def test_idle_connections_memory(self):
        n, k = self.N - self.N % self.BATCH, self.BATCH
        warm = self.dv.doq("-K", "16", "-q")   # code paths, GnuTLS and pools warm
        self.assert_answered(warm, 16)
        time.sleep(0.5)
        st0 = self.dv.stats()
        rss0 = self.dv.rss_kb()
        hold = h.scaled(8) + n / k
        procs = []
        try:
            for i in range(n // k):
                cmd = [h.doq_binary(), "--name", h.AUTH_NAME, "--ca", h.CA, "-K", str(k), "-q",
                       "--hold", str(hold), "127.0.0.1:%d" % self.dv.quic_port,
                       WWW, "A"]
                procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.PIPE))
                h.wait_for(lambda: self.dv.stats()["doq_handshakes"] - st0["doq_handshakes"]
                           >= k * (i + 1) and self.dv.stats()["doq_half_open"] == 0,
                           h.scaled(20), interval=0.05, what="batch %d handshakes" % i)
            time.sleep(1.0)
            rss1 = self.dv.rss_kb()
            st1 = self.dv.stats()
            d = h.stat_delta(st0, st1, ["doq_handshakes", "doq_idle_closed", "doq_evicted",
                                         "doq_refused", "doq_closed_error", "queries"])
            per = (rss1 - rss0) * 1024.0 / n
            log("%d idle DoQ connections held: RSS %d -> %d KiB, %.0f bytes each; %s" % (
                n, rss0, rss1, per, d))
            self.assertEqual(d["doq_handshakes"], n, d)
            self.assertEqual(d["doq_idle_closed"] + d["doq_evicted"] + d["doq_refused"], 0, d)
            self.assert_healthy("%d idle DoQ connections held" % n)
            # about 64 KiB measured: ngtcp2's blocks in page runs, of which
            # only the pages written count (about 52 KiB), GnuTLS's session
            # shed after the handshake (75-80 KiB before both)
            limit = 70 * 1024 * (4 if h.SANITIZE else 1)
            self.assertLess(per, limit, "RSS grew by %.0f bytes per idle DoQ connection "
                            "(limit %d)" % (per, limit))
            for p in procs:
                err = p.communicate(timeout=hold + h.scaled(30))[1]
                self.assertEqual(p.returncode, 0, err[-2000:])
            procs = []
            time.sleep(2.0)   # their closing periods (3 PTO) end
            rss2 = self.dv.rss_kb()
            left = (rss2 - rss0) * 1024.0 / n
            log("after they closed: RSS %d KiB, %.0f bytes left per connection" % (rss2, left))
            if not h.SANITIZE:
                # a freed page run goes back to the kernel; what stays is
                # the heap's share (about 12 KiB measured, 75-80 KiB before)
                self.assertLess(left, 32 * 1024, "RSS after %d DoQ connections closed: %.0f "
                                "bytes per connection not given back" % (n, left))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=10)
        self.assert_healthy("%d idle DoQ connections closed" % n)


class HalfOpenFlood:
    """dnsveil-doq --half-open from one loopback address per process: every
    connection answers the Retry (so it passes address validation) and then
    never finishes its handshake.  Bounded: at most `rate` Initials a second
    for `seconds`, each waiting at most 1 s for the server; loopback only.
    Killed (by PID) at cleanup if still running."""

    def __init__(self, port, addr, rate, seconds, extra=()):
        self.cmd = [h.doq_binary(), "-k", "--json", "--bind", addr, "--half-open", "1000000",
                    "--rate", str(rate), "-d", str(seconds), "-t", "1"] + list(extra) + [
                    "127.0.0.1:%d" % port]
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.result = None

    def wait(self, timeout):
        out, err = self.proc.communicate(timeout=timeout)
        for line in out.splitlines():
            if line.startswith("{"):
                self.result = json.loads(line)
        if self.result is None:
            raise AssertionError("%s: no result (exit %s): %s" % (
                " ".join(self.cmd), self.proc.returncode, err[-1000:]))
        return self.result

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class DoqHalfOpen(DoqBase):
    """Half-open connections (the handshake never completes) must not lock
    legitimate clients out: per worker at most doq.max-handshakes of them and
    doq.max-handshakes-per-address from one address, and a new client evicts
    the oldest half-open connection of the address holding the most."""
    workers = 2
    HANDSHAKES = 16
    PER_ADDRESS = 4
    # small tables keep it quick; doq.max-connections is what today's
    # listener fills with half-open connections and then refuses everyone
    doq = {"retry": "always", "max-connections": 64, "max-handshakes": HANDSHAKES,
           "max-handshakes-per-address": PER_ADDRESS}
    # long enough for the legitimate client's ten tries also when a
    # sanitizer build under the flood takes most of a second for each
    SECONDS = 6 * h.SCALE
    # RSS may grow by at most this during a flood: the half-open table is
    # 2 workers x 16 x ~93 KB = 3 MB, evicted, refused and failed ones keep
    # nothing (release builds grow 2-5 MB; a92fee0 grew 22-26 MB holding 64
    # half-open and every failed one for 3 PTOs).  ASan: bigger allocations,
    # an 8 MB quarantine and shadow memory (19-23 MB seen)
    RSS_GROWTH_KB = (48 if h.SANITIZE else 16) * 1024

    def flood(self, attackers, rate, extra=()):
        st0 = self.dv.stats()
        rss0 = self.dv.rss_kb()
        each = max(1, int(rate / h.SCALE / len(attackers)))
        floods = [HalfOpenFlood(self.dv.quic_port, a, each, self.SECONDS, extra)
                  for a in attackers]
        for f in floods:
            self.addCleanup(f.kill)
        # a legitimate client on another address connects again and again
        # (one query per connection) while the flood runs
        ok, tries, failures, rss_max, peak_now = 0, 0, [], rss0, 0
        t_end = time.monotonic() + self.SECONDS - 0.5
        time.sleep(0.5)  # the flood is under way
        while time.monotonic() < t_end:
            r = h.Doq(self.dv.quic_port, ["--bind", "127.0.0.2", "-t", str(h.scaled(2))])
            tries += 1
            if r.rc == 0 and r.summary["answers"] == 1:
                ok += 1
            elif len(failures) < 5:
                failures.append((r.errors[:2], r.close()))
            rss_max = max(rss_max, self.dv.rss_kb())
            peak_now = max(peak_now, self.dv.stats().get("doq_half_open", 0))
        results = [f.wait(timeout=self.SECONDS + h.scaled(30)) for f in floods]
        st1 = self.dv.stats()
        d = {k: st1[k] - st0[k] for k in st1 if k.startswith("doq_") and "half_open" not in k}
        log("flood %s: %s" % (attackers, results))
        log("legitimate: %d of %d connections answered; RSS %d -> max %d KB; half-open peak %s "
            "(now-samples max %d); counters %s" % (
                ok, tries, rss0, rss_max, st1.get("doq_half_open_peak"), peak_now,
                {k: v for k, v in d.items() if v}))
        self.assertGreaterEqual(tries, 10, "the legitimate client ran too few times")
        self.assertGreaterEqual(ok, 0.95 * tries, "legitimate clients locked out: %d of %d "
                                "answered; failures %s" % (ok, tries, failures))
        if not extra:
            self.assertGreater(sum(x["half_open"] for x in results), 0,
                               "the flood made no half-open connection: %s" % results)
        self.assertLessEqual(rss_max - rss0, self.RSS_GROWTH_KB,
                             "RSS grew by %d KB during the flood" % (rss_max - rss0))
        return results, d, st1

    def test_flood_from_one_address(self):
        # the report's rate: 1,500 Initials a second, all answering Retry
        results, d, st = self.flood(["127.0.0.1"], 1500)
        # one address holds at most its share on each worker (the
        # legitimate client, 127.0.0.2, holds at most one more)
        bound = self.workers * (self.PER_ADDRESS + 1)
        self.assertLessEqual(st["doq_half_open_peak"], bound, st)
        self.assertGreater(d["doq_refused_address"], 0, d)
        self.assertIn("doq.max-handshakes-per-address", self.dv.stderr_text(),
                      "a (rate-limited) line says why connections are refused")
        log("ok: one address flooding half-open connections holds at most %d; the "
            "legitimate client connects" % bound)

    def test_flood_from_many_addresses(self):
        # six addresses x 4 fill the 16-entry table: new connections (the
        # flood's own and the legitimate client's) evict the oldest half-open
        # connection of an address holding the most.  Every Initial now
        # costs a full TLS handshake (a refusal costs none), so the rate is
        # lower: 2 cores must run the six attackers and dnsveil (the CPU
        # cost per address is doq's handshake *rate* limit's business)
        attackers = ["127.0.0.%d" % i for i in (1, 3, 4, 5, 6, 7)]
        results, d, st = self.flood(attackers, 400)
        self.assertLessEqual(st["doq_half_open_peak"], self.workers * self.HANDSHAKES, st)
        self.assertGreater(d["doq_handshakes_evicted"], 0, d)
        log("ok: %d addresses flooding: at most %d half-open, %d evicted, the legitimate "
            "client connects" % (len(attackers), self.workers * self.HANDSHAKES,
                                 d["doq_handshakes_evicted"]))

    def test_failing_handshakes_keep_no_state(self):
        # the same flood with a ClientHello the server rejects (no ALPN
        # "doq"): each connection goes straight to its closing period, which
        # keeps only the CONNECTION_CLOSE (a92fee0 kept the whole ngtcp2 and
        # TLS state for 3 PTOs: +190 MB in 6 s at this rate)
        results, d, st = self.flood(["127.0.0.1"], 1500, ["--alpn", "h3"])
        self.assertGreater(d["doq_closed_error"], 1000 / h.SCALE, d)
        log("ok: %d failed handshakes in %d s, RSS bounded" % (d["doq_closed_error"], self.SECONDS))

class DoqDrain(DoqBase):
    def test_sigterm_answers_then_closes(self):
        # a query in flight (slow authority, 1 s) when dnsveil is told to
        # stop: the client gets its answer, then CONNECTION_CLOSE with
        # DOQ_NO_ERROR, and dnsveil exits 0
        slow = self.start_slow(delay=1.0)
        ub = self.start_unbound(slow=slow, log_queries=False)
        dv = h.Dnsveil(listen=["dns", "quic"],
                       upstream=[ub], workers=1, config=h.doq_config(), name="doq-drain")
        self._dnsveils.append(dv)
        dv.start()
        # the readiness check already opened a stream: wait for one more
        streams0 = dv.stats()["doq_streams"]
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", dv.doq(
            "--hold", str(h.scaled(5)), "-t", str(h.scaled(5)), names=("d1.%s" % h.SLOW_ZONE, "A"))))
        t.start()
        h.wait_for(lambda: dv.stats()["doq_streams"] > streams0, h.scaled(5), what="the query in flight")
        self.assertEqual(dv.stop(), 0)
        t.join()
        r = out["r"]
        self.assert_answered(r)
        c = self.peer_close(r)
        self.assertEqual((c.get("kind"), c.get("code")), ("application", 0), r)
        log("ok: SIGTERM with a query in flight: answered, then closed with DOQ_NO_ERROR")


class DoqMigration(DoqBase):
    workers = 2

    def test_migration_across_workers(self):
        st0 = self.dv.stats()
        runs = 6
        for i in range(runs):
            r = self.dv.doq("--migrate-after", "3", "--count", "10", "--concurrency", "1")
            self.assert_answered(r, 10)
            self.assertTrue(r.summary["migrated"], r)
            self.assertEqual(r.summary["answers_after_migration"], 7, r)
        st1 = self.dv.stats()
        self.assertGreaterEqual(st1["doq_migrations"] - st0["doq_migrations"], runs)
        self.assertEqual(st1["doq_connections"] - st0["doq_connections"], runs,
                         "no connection was rebuilt after its client moved")
        log("ok: %d clients moved to a new port mid-connection (2 workers): every query answered" % runs)


if __name__ == "__main__":
    h.main()
