#!/usr/bin/python3
"""More than one replica: tls.ticket-key-file.  Two dnsveil processes (A and
B, their own ports) read the same 80-byte key file, as replicas behind a
load balancer mounting one Kubernetes Secret do:

- a TLS 1.3 session ticket that openssl s_client got from A resumes on B
  ("Reused, TLSv1.3"); without the shared file it does not (the control);
- rotation: after the file is replaced, the old ticket still resumes (the
  previous key is kept); after a second replacement it no longer does;
- DoQ: a NEW_TOKEN token issued by A lets the client skip Retry on B
  (doq.retry: always), with the same two-step rotation, and a DoQ session
  from A resumes on B (dnsveil-doq --token / --session: Debian 12 packages
  no other QUIC client that can carry a token; kdig +quic has no option);
- a key file of the wrong size is a config error (--check-config too) and,
  written later, is logged while the keys stay; base64 is accepted.

Every wait polls the log line the watcher writes when it takes a change."""

import base64
import os
import re
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

h.ensure_dev_certs()

CHANGED = "tls.ticket-key-file: .* changed"
STAY = "the keys stay as they are"


def write_key(path, data):
    """Replace the file the way a Secret update does: a new file renamed
    over the old (a new inode; the watcher stat()s the path)."""
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


class ReplicaBase(h.IntegrationTest):
    shared_key = True

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="dv-replicas-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.key = os.path.join(self.tmp, "ticket.key")
        write_key(self.key, os.urandom(80))
        self.ub = self.start_unbound(log_queries=False)
        self.a = self.start_replica("a")
        self.b = self.start_replica("b")

    def start_replica(self, name):
        cfg = h.doq_config(doq={"retry": "always"})
        if self.shared_key:
            cfg["tls"]["ticket-key-file"] = self.key
        d = h.Dnsveil(listen=["dns", "tls", "quic"], upstream=[self.ub], workers=2,
                      config=cfg, name="replica-" + name)
        self._dnsveils.append(d)
        return d.start()

    def new_session(self, dv, sess):
        rc, out = h.s_client(dv.tls_port, "-tls1_3", "-CAfile", h.CA, "-verify_return_error",
                             "-sess_out", sess, hold=1.0)
        self.assertEqual(rc, 0, out)
        self.assertIn("New, TLSv1.3", out, out)
        self.assertIn("Post-Handshake New Session Ticket arrived", out, out)
        self.assertTrue(os.path.getsize(sess) > 0, out)

    def resume(self, dv, sess):
        """'Reused' or 'New': what s_client says of a connection that
        offers the session saved in `sess`."""
        rc, out = h.s_client(dv.tls_port, "-tls1_3", "-CAfile", h.CA, "-verify_return_error",
                             "-sess_in", sess, hold=0.3)
        self.assertEqual(rc, 0, out)
        m = re.search(r"^(New|Reused), (\S+),", out, re.M)
        self.assertTrue(m, out)
        self.assertEqual(m.group(2), "TLSv1.3", out)
        return m.group(1)

    def rotate(self, data=None):
        """A new key file; returns once both replicas logged the change."""
        starts = [len(d.stderr_text()) for d in (self.a, self.b)]
        write_key(self.key, data or os.urandom(80))
        for d, s in zip((self.a, self.b), starts):
            h.wait_for(lambda: re.search(CHANGED, d.stderr_text()[s:]), h.scaled(10),
                       what="%s to take the new key file" % d.name)

    def doq_token(self, dv, tok):
        r = dv.doq("--token", tok)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.summary["answers"], 1, r)
        return r

    def copy(self, src, name):
        dst = os.path.join(self.tmp, name)
        shutil.copyfile(src, dst)
        return dst


class SharedKeyFile(ReplicaBase):
    def test_tls_ticket_from_a_resumes_on_b_and_rotation(self):
        sess = os.path.join(self.tmp, "sess.pem")
        self.new_session(self.a, sess)
        # 2 workers each: several connections land on both workers of B
        got = [self.resume(self.b, sess) for _ in range(4)] + [self.resume(self.a, sess)]
        self.assertEqual(got, ["Reused"] * 5, "a ticket from A must resume on B: %s" % got)
        log("ok: TLS 1.3 ticket from A resumed on B and A: %s" % got)
        st = self.b.stats()
        self.assertGreaterEqual(st["tls_resumed"], 4, st)

        self.rotate()
        got = [self.resume(self.b, sess), self.resume(self.a, sess)]
        self.assertEqual(got, ["Reused"] * 2,
                         "after one rotation the previous key still decrypts: %s" % got)
        log("ok: after one replacement of the key file the old ticket still resumes: %s" % got)
        # a ticket issued now (new key) resumes on the other replica too
        sess2 = os.path.join(self.tmp, "sess2.pem")
        self.new_session(self.b, sess2)
        self.assertEqual(self.resume(self.a, sess2), "Reused")

        self.rotate()
        got = [self.resume(self.b, sess), self.resume(self.a, sess)]
        self.assertEqual(got, ["New"] * 2,
                         "two rotations later the old ticket must not resume: %s" % got)
        self.assertEqual(self.resume(self.a, sess2), "Reused",
                         "the ticket of the previous key still resumes")
        log("ok: after a second replacement the first ticket no longer resumes (%s); "
            "the second still does" % got)

    def test_tls12_ticket_from_a_resumes_on_b(self):
        sess = os.path.join(self.tmp, "sess12.pem")
        rc, out = h.s_client(self.a.tls_port, "-tls1_2", "-CAfile", h.CA,
                             "-verify_return_error", "-sess_out", sess, hold=0.3)
        self.assertEqual(rc, 0, out)
        self.assertIn("New, TLSv1.2", out, out)
        got = []
        for _ in range(3):
            rc, out = h.s_client(self.b.tls_port, "-tls1_2", "-CAfile", h.CA,
                                 "-verify_return_error", "-sess_in", sess, hold=0.3)
            self.assertEqual(rc, 0, out)
            got.append(re.search(r"^(New|Reused), (\S+),", out, re.M).group(1))
        self.assertEqual(got, ["Reused"] * 3, "a TLS 1.2 ticket from A must resume on B")
        log("ok: TLS 1.2 ticket from A resumed on B: %s" % got)

    def test_doq_token_from_a_skips_retry_on_b_and_rotation(self):
        tok = os.path.join(self.tmp, "tok.bin")
        r = self.doq_token(self.a, tok)
        self.assertTrue(r.summary["retry_received"], "retry: always: %s" % r)
        self.assertTrue(r.summary["new_token_received"], r)
        t0 = self.copy(tok, "tok0.bin")
        st0 = self.b.stats()
        r = self.doq_token(self.b, self.copy(t0, "t.bin"))
        self.assertFalse(r.summary["retry_received"],
                         "A's NEW_TOKEN token must skip Retry on B: %s" % r)
        self.assertGreaterEqual(self.b.stats()["doq_token_ok"] - st0["doq_token_ok"], 1)
        log("ok: NEW_TOKEN token from A skipped Retry on B")

        self.rotate()
        r = self.doq_token(self.b, self.copy(t0, "t.bin"))
        self.assertFalse(r.summary["retry_received"],
                         "after one rotation the previous secret still validates: %s" % r)
        self.rotate()
        st0 = self.b.stats()
        r = self.doq_token(self.b, self.copy(t0, "t.bin"))
        self.assertTrue(r.summary["retry_received"],
                        "two rotations later the old token must get a Retry: %s" % r)
        self.assertGreaterEqual(self.b.stats()["doq_token_bad"] - st0["doq_token_bad"], 1)
        log("ok: DoQ token: still good after one replacement, Retry after the second")

    def test_doq_session_from_a_resumes_on_b(self):
        sess = os.path.join(self.tmp, "doq-sess.bin")
        r = self.a.doq("--session", sess)
        self.assertEqual(r.summary["answers"], 1, r)
        self.assertTrue(os.path.getsize(sess) > 0, r)
        r = self.b.doq("--session", sess)
        self.assertEqual(r.summary["answers"], 1, r)
        self.assertTrue(r.summary["resumed"], "a DoQ session from A must resume on B: %s" % r)
        log("ok: DoQ session ticket from A resumed on B")

    def test_bad_key_file(self):
        # --check-config: wrong size, unreadable; base64 is fine
        bad = os.path.join(self.tmp, "bad.key")
        with open(bad, "wb") as f:
            f.write(os.urandom(79))
        cfg = h.dot_config()
        for path, want in ((bad, "79 bytes: expected 80"),
                           (os.path.join(self.tmp, "missing.key"), "No such file")):
            p = os.path.join(self.tmp, "c.yaml")
            cfg["tls"]["ticket-key-file"] = path
            with open(p, "w") as f:
                f.write(h.to_yaml(dict(cfg, listen=["tls://127.0.0.1:1"], upstream=[
                    "tcp://127.0.0.1:2"], fallback=[])))
            r = h.run_dnsveil(["--check-config", "-c", p])
            self.assertNotEqual(r.returncode, 0, r)
            self.assertIn("tls.ticket-key-file: %s: " % path, r.stderr)
            self.assertIn(want, r.stderr)
            log("ok: --check-config: %s" % r.stderr.strip())
        b64 = os.path.join(self.tmp, "b64.key")
        with open(b64, "wb") as f:
            f.write(base64.b64encode(os.urandom(80)) + b"\n")
        cfg["tls"]["ticket-key-file"] = b64
        with open(p, "w") as f:
            f.write(h.to_yaml(dict(cfg, listen=["tls://127.0.0.1:1"], upstream=[
                "tcp://127.0.0.1:2"], fallback=[])))
        r = h.run_dnsveil(["--check-config", "-c", p])
        self.assertEqual(r.returncode, 0, r.stderr)

        # a running replica given a bad file logs it and keeps its keys
        sess = os.path.join(self.tmp, "sess.pem")
        self.new_session(self.a, sess)
        start = len(self.a.stderr_text())
        write_key(self.key, os.urandom(81))
        h.wait_for(lambda: STAY in self.a.stderr_text()[start:], h.scaled(10),
                   what="the bad key file to be logged")
        self.assertIn("81 bytes: expected 80", self.a.stderr_text()[start:])
        self.assertEqual(self.resume(self.b, sess), "Reused")
        self.assertEqual(self.resume(self.a, sess), "Reused")
        # the same bytes again (a Secret re-synced): no rotation, no line
        same = os.urandom(80)
        self.rotate(same)
        start = len(self.a.stderr_text())
        write_key(self.key, same)
        self.rotate()  # a real change after it: one rotation, not two
        self.assertEqual(len(re.findall(CHANGED, self.a.stderr_text()[start:])), 1)
        self.assertEqual(self.resume(self.a, sess), "New")
        self.assertTrue(self.a.alive() and self.b.alive())
        log("ok: a bad file on a change is logged and the keys stay; the same bytes "
            "rewritten do not rotate")


class NoKeyFile(ReplicaBase):
    """The control: without the shared file each process has its own keys,
    so the checks above can fail."""
    shared_key = False

    def test_no_resumption_across_replicas(self):
        sess = os.path.join(self.tmp, "sess.pem")
        self.new_session(self.a, sess)
        self.assertEqual(self.resume(self.a, sess), "Reused")
        self.assertEqual(self.resume(self.b, sess), "New")
        tok = os.path.join(self.tmp, "tok.bin")
        self.doq_token(self.a, tok)
        r = self.doq_token(self.b, tok)
        self.assertTrue(r.summary["retry_received"], r)
        log("ok: without tls.ticket-key-file: A's ticket is New on B, A's token gets a Retry")


if __name__ == "__main__":
    h.main()
