#!/usr/bin/python3
"""DoT over dnsveil's own TLS 1.3 record layer (src/tls/tls13_rec.c), which
takes over from wolfSSL once a TLS 1.3 handshake is done, with real clients:

- each of the three TLS 1.3 suites (Python's ssl limited to one by an
  OpenSSL config file, the client checking which one it got);
- queries that leave in the same TCP segment as the client's Finished
  (Python's ssl over memory BIOs: the Finished and the queries are one
  send), all answered;
- TLS 1.2 (which stays on wolfSSL) still answered;
- a client KeyUpdate (openssl s_client's `K`, update_requested, and `k`,
  not requested): answers still correct after each, and dnsveil's own
  KeyUpdate seen by the client only when it asked;
- a record with one flipped ciphertext byte (through a TCP relay): that
  connection ends with a bad_record_mac alert, other connections are
  still answered;
- close_notify answered with close_notify.

dnsveil listens on dns://127.0.0.1:PORT and tls://127.0.0.1:TLS_PORT with
certs/dev-cert.pem."""

import json
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.message  # noqa: E402

SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
          "TLS_CHACHA20_POLY1305_SHA256")

h.ensure_dev_certs()

# A client in its own process, so that an OpenSSL config file (given by
# OPENSSL_CONF) can limit its TLS 1.3 suites: Python's ssl has no call for
# that.  It prints the suite it got and the answers' first A records.
SUITE_CLIENT = r"""
import json, socket, ssl, struct, sys
import dns.message
port, ca, names = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["dot"])
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                    server_hostname="dns.test")
wire = b""
for i, n in enumerate(names):
    q = dns.message.make_query(n, "A")
    q.id = i + 1
    w = q.to_wire()
    wire += struct.pack(">H", len(w)) + w
s.sendall(wire)
buf, got = b"", {}
while len(got) < len(names):
    d = s.recv(65536)
    if not d:
        break
    buf += d
    while len(buf) >= 2 and len(buf) >= 2 + struct.unpack(">H", buf[:2])[0]:
        l = struct.unpack(">H", buf[:2])[0]
        m = dns.message.from_wire(buf[2:2 + l])
        buf = buf[2 + l:]
        got[m.id] = [rr.to_text() for rrs in m.answer for rr in rrs]
print(json.dumps({"cipher": s.cipher()[0], "version": s.version(),
                  "answers": [got.get(i + 1) for i in range(len(names))]}))
"""


class RecordsBase(h.IntegrationTest):
    """Unbound as the local resolver and a dnsveil with a DoT listener."""

    def setUp(self):
        super().setUp()
        self.ub = self.start_unbound(log_queries=False)
        d = h.Dnsveil(listen=["dns", "tls"], upstream=[self.ub],
                      config=h.dot_config(limits={"tcp-idle-timeout-ms": 30000}),
                      workers=1, name="dot")
        self._dnsveils.append(d)
        self.dv = d.start()

    def assert_answers(self, sock, n=3, what=""):
        """`n` queries pipelined on `sock`, each answered rightly."""
        for i in range(n):
            _, m = h.stream_query(sock, h.make_query("h%d.example.test" % i))
            self.assertEqual(h.a_records(m), [h.host_addr(i)], "%s: query %d: %s" % (
                what, i, m))

    def assert_healthy(self, what):
        self.assertTrue(self.dv.alive(), "dnsveil died after %s:\n%s" % (
            what, h.tail(self.dv.stderr_path)))
        with h.tls_connect(self.dv.tls_port) as s:
            self.assert_answers(s, 2, "a new connection after " + what)
        log("ok: dnsveil alive and answering after %s" % what)


class Suites(RecordsBase):

    def test_each_tls13_suite(self):
        """A client limited to one TLS 1.3 suite, for each of the three,
        gets every pipelined answer right."""
        names = ["h%d.example.test" % i for i in range(5)]
        for suite in SUITES:
            with tempfile.NamedTemporaryFile("w", suffix=".cnf") as cnf:
                cnf.write("openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\n"
                          "system_default = sd\n[sd]\nCiphersuites = %s\n" % suite)
                cnf.flush()
                env = dict(os.environ, OPENSSL_CONF=cnf.name)
                r = subprocess.run(["/usr/bin/python3", "-c", SUITE_CLIENT,
                                    str(self.dv.tls_port), h.CA] + names,
                                   env=env, capture_output=True, timeout=h.scaled(30))
            self.assertEqual(r.returncode, 0, "%s client:\n%s" % (suite, r.stderr.decode()))
            out = json.loads(r.stdout)
            self.assertEqual((out["version"], out["cipher"]), ("TLSv1.3", suite), out)
            self.assertEqual(out["answers"], [["%s" % h.host_addr(i)] for i in range(5)],
                             "%s: %s" % (suite, out))
            log("ok: %s: %d pipelined answers right" % (suite, len(names)))
        self.assert_healthy("the three suites")

    def test_tls12_still_answered(self):
        """TLS 1.2 stays on wolfSSL and is answered."""
        ctx = h.client_context(max_version=ssl.TLSVersion.TLSv1_2)
        with h.tls_connect(self.dv.tls_port, ctx=ctx) as s:
            self.assertEqual(s.version(), "TLSv1.2")
            self.assert_answers(s, 3, "TLS 1.2")
        log("ok: TLS 1.2 (%s) answered" % "wolfSSL's record layer")


class Pipelined(RecordsBase):

    def test_queries_in_the_finished_segment(self):
        """The client's Finished and 20 queries leave in one send (one
        segment on loopback): all 20 are answered."""
        ctx = h.client_context()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname=h.AUTH_NAME)
        s = h.tcp_connect(self.dv.tls_port)
        try:
            for _ in range(20):
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if out.pending:
                        s.sendall(out.read())
                    d = s.recv(65536)
                    self.assertTrue(d, "closed during the handshake")
                    inc.write(d)
            self.assertEqual(obj.version(), "TLSv1.3")
            # the Finished is in `out`, not sent yet: the queries go with it
            n = 20
            for i in range(n):
                w = h.make_query("h%d.example.test" % i, qid=i + 1).to_wire()
                obj.write(struct.pack(">H", len(w)) + w)
            first = out.read()
            s.sendall(first)
            log("Finished and %d queries sent in one send of %d bytes" % (n, len(first)))
            buf, got = b"", {}
            deadline = time.monotonic() + h.scaled(10)
            while len(got) < n and time.monotonic() < deadline:
                try:
                    buf += obj.read(65536)
                except ssl.SSLWantReadError:
                    d = s.recv(65536)
                    self.assertTrue(d, "closed with %d of %d answers" % (len(got), n))
                    inc.write(d)
                    continue
                while len(buf) >= 2 and len(buf) >= 2 + struct.unpack(">H", buf[:2])[0]:
                    ln = struct.unpack(">H", buf[:2])[0]
                    m = dns.message.from_wire(buf[2:2 + ln])
                    buf = buf[2 + ln:]
                    got[m.id] = h.a_records(m)
            self.assertEqual(got, {i + 1: [h.host_addr(i)] for i in range(n)})
            log("ok: all %d queries sent with the Finished answered" % n)
        finally:
            s.close()


class KeyUpdate(RecordsBase):

    def _answers_in(self, data, qids):
        """The DoT answers with ids `qids` found in s_client's raw output."""
        found = {}
        for qid in qids:
            for mt in re.finditer(re.escape(struct.pack(">H", qid)), data):
                i = mt.start()
                if i < 2:
                    continue
                ln = struct.unpack(">H", data[i - 2:i])[0]
                try:
                    m = dns.message.from_wire(data[i:i + ln])
                except Exception:
                    continue
                if m.flags & 0x8000:
                    found[qid] = h.a_records(m)
                    break
        return found

    def test_client_key_update(self):
        """openssl s_client sends KeyUpdate with update_requested (K) and
        without (k) between queries: every answer is right, and dnsveil
        sends its own KeyUpdate exactly when asked."""
        cmd = [h.OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % self.dv.tls_port,
               "-servername", h.AUTH_NAME, "-CAfile", h.CA, "-tls1_3", "-alpn", "dot",
               "-msg"]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        out = {"stdout": b"", "stderr": b""}

        def reader(name, f):
            while True:
                d = f.read1(65536)
                if not d:
                    return
                out[name] += d
        threads = [threading.Thread(target=reader, args=(k, getattr(p, k)), daemon=True)
                   for k in ("stdout", "stderr")]
        for t in threads:
            t.start()
        plan = ["K", "k", "K", "K", "k"]
        qids = []
        try:
            def wait(pred, what):
                h.wait_for(pred, h.scaled(10), interval=0.05, what=what)

            def query(i):
                qid = 0x4100 + i  # no newline or command letter in the id
                w = h.make_query("h%d.example.test" % i, qid=qid).to_wire()
                p.stdin.write(struct.pack(">H", len(w)) + w)
                p.stdin.flush()
                qids.append(qid)
                wait(lambda: qid in self._answers_in(out["stdout"], [qid]),
                     "the answer to query %d" % i)
            wait(lambda: b"Verify return code: 0" in out["stdout"] + out["stderr"],
                 "the handshake")
            query(0)
            for n, cmd_letter in enumerate(plan, 1):
                p.stdin.write(cmd_letter.encode() + b"\n")
                p.stdin.flush()
                wait(lambda: out["stderr"].count(b"KEYUPDATE") >= n, "s_client's KEYUPDATE")
                time.sleep(0.1)
                query(n)
                # -msg shows ours (<<<) and the client's own (>>>)
                sent = out["stdout"].count(b">>> TLS 1.3, Handshake [length 0005], KeyUpdate")
                recvd = out["stdout"].count(b"<<< TLS 1.3, Handshake [length 0005], KeyUpdate")
                self.assertEqual(sent, n, out["stdout"][-2000:])
                self.assertEqual(recvd, plan[:n].count("K"),
                                 "dnsveil's KeyUpdates after %s" % plan[:n])
                log("ok: after %s the answer is right; dnsveil's KeyUpdates so far: %d"
                    % (cmd_letter, recvd))
            answers = self._answers_in(out["stdout"], qids)
            self.assertEqual(answers, {0x4100 + i: [h.host_addr(i)] for i in range(len(qids))})
        finally:
            p.stdin.close()
            try:
                p.wait(timeout=h.scaled(10))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            for t in threads:
                t.join(h.scaled(5))
            p.stdout.close()
            p.stderr.close()
        self.assert_healthy("client KeyUpdates")


class Relay:
    """A TCP relay to dnsveil that flips one ciphertext byte of the
    `flip_at`-th application_data record the client sends (the first is
    its Finished)."""

    def __init__(self, port, flip_at):
        self.port, self.flip_at = port, flip_at
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.listen_port = self.ls.getsockname()[1]
        self.flipped = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        c, _ = self.ls.accept()
        self.ls.close()
        s = socket.create_connection(("127.0.0.1", self.port))
        threading.Thread(target=self.pipe, args=(s, c), daemon=True).start()
        buf, n23 = b"", 0
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                buf += d
                out = b""
                while len(buf) >= 5 and len(buf) >= 5 + struct.unpack(">H", buf[3:5])[0]:
                    ln = struct.unpack(">H", buf[3:5])[0]
                    rec = bytearray(buf[:5 + ln])
                    buf = buf[5 + ln:]
                    if rec[0] == 23:
                        n23 += 1
                        if n23 == self.flip_at:
                            rec[5 + ln // 2] ^= 0x01
                            self.flipped = True
                    out += bytes(rec)
                if out:
                    s.sendall(out)
        except OSError:
            pass
        finally:
            s.close()
            c.close()

    @staticmethod
    def pipe(src, dst):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                dst.sendall(d)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Corrupted(RecordsBase):

    def test_flipped_byte_closes_that_connection(self):
        """The client's third application_data record (its second query)
        has a flipped byte: dnsveil answers the first query, then sends
        bad_record_mac and closes; another connection is answered before
        and after."""
        other = h.tls_connect(self.dv.tls_port)
        relay = Relay(self.dv.tls_port, flip_at=3)
        ctx = h.client_context()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        s = h.tls_connect(relay.listen_port, ctx=ctx)
        try:
            self.assert_answers(s, 1, "before the flipped byte")
            self.assert_answers(other, 1, "the other connection")
            w = h.make_query("h1.example.test").to_wire()
            s.sendall(struct.pack(">H", len(w)) + w)
            dt, how, got = h.wait_closed(s, h.scaled(5))
            log("flipped record: connection ended after %.2fs: %s (%d bytes)" % (
                dt, how, len(got)))
            self.assertTrue(relay.flipped)
            self.assertEqual(got, b"", "an answer to a record that did not authenticate")
            self.assertIn("tls error", how, "no bad_record_mac alert: %s" % how)
            self.assert_answers(other, 3, "the other connection after the flipped byte")
        finally:
            s.close()
            other.close()
        self.assert_healthy("a flipped ciphertext byte")

    def test_bad_record_mac_alert(self):
        """What the client sees for a flipped byte is the bad_record_mac
        alert (RFC 8446 §5.2)."""
        relay = Relay(self.dv.tls_port, flip_at=2)
        ctx = h.client_context()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        s = h.tls_connect(relay.listen_port, ctx=ctx)
        try:
            w = h.make_query("h1.example.test").to_wire()
            s.sendall(struct.pack(">H", len(w)) + w)
            with self.assertRaises(ssl.SSLError) as e:
                s.settimeout(h.scaled(5))
                while s.recv(4096):
                    pass
            self.assertIn("BAD_RECORD_MAC", str(e.exception).upper())
            log("ok: the client got %s" % e.exception)
        finally:
            s.close()


class CloseNotify(RecordsBase):

    def test_close_notify_answered(self):
        """A client's close_notify after a query is answered with
        dnsveil's close_notify (unwrap() returns)."""
        s = h.tls_connect(self.dv.tls_port)
        self.assert_answers(s, 2, "before close_notify")
        self.assertEqual(s.version(), "TLSv1.3")
        s.settimeout(h.scaled(5))
        plain = s.unwrap()  # sends ours, waits for dnsveil's
        self.assertEqual(plain.recv(100), b"")
        plain.close()
        log("ok: close_notify answered with close_notify, then EOF")
        self.assert_healthy("close_notify")


if __name__ == "__main__":
    h.main()
