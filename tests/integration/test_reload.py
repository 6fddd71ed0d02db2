#!/usr/bin/python3
"""Configuration reload: SIGHUP and POST /reload on the admin listener.

dnsveil listens on dns://, tls:// and quic:// with a copy of the dev
certificate, and on an admin listener; the tests rewrite its configuration
file and reload it:

- POST /reload (curl) answers 200 once the reload is done and counts it in
  dnsveil_reload_successes_total; a file with an error is refused with
  `FILE:LINE: KEY: reason` (500 with the same text, and in the log),
  counted in dnsveil_reload_failures_total, and changes nothing: the log
  level stays, DoT and DoQ keep serving the same certificate;
- log-level: debug applied by SIGHUP shows at once (the DoT handshake line
  that only debug writes); cache.max-ttl caps the next fresh answer while
  the cached ones stay; a changed cache.size is named as taking effect on
  restart;
- a new certificate and key on disk, then SIGHUP: new DoQ connections
  (dnsveil-doq: Debian 12's kdig is built without QUIC) verify with the
  new CA and no longer with the old one, as DoT does (test_dot.DotReload);
  a key that does not match is refused for every listener and counted.
"""

import os
import shutil
import signal
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



class Reload(h.ReloadMixin, h.IntegrationTest):

    def setUp(self):
        h.IntegrationTest.setUp(self)
        self.private_pki("dv-reload-pki-")
        self.ub = self.start_unbound(log_queries=False)
        self.admin = h.free_port()
        self.dv = self.start_dnsveil(
            upstream=[self.ub], listen=["dns", "tls", "quic"],
            config=h.dot_config(cert=self.cert, key=self.key),
            extra_yaml="admin:\n  listen: [\"http://127.0.0.1:%d\"]\n" % self.admin)
        with open(self.dv.conf_path) as f:
            self.base = f.read()

    # ---- helpers

    def doq(self, ca):
        return self.dv.doq("--name", h.AUTH_NAME, "--ca", ca, trust=False)

    def assert_serves(self, ca, why):
        r = h.kdig_tls(self.dv.tls_port, [(WWW, "A")], ca=ca)
        self.assertEqual(h.kdig_answers(r), [(WWW + ".", [WWW_ADDR])],
                         "DoT with %s %s: %r" % (ca, why, r))
        d = self.doq(ca)
        self.assertEqual((d.rc, len(d.answers)), (0, 1), "dnsveil-doq %s: %r" % (why, d))

    # ---- tests

    def test_post_reload_log_level_and_refusal(self):
        ok0, fail0, ts0 = self.counts()
        self.assertEqual((ok0, fail0), (0, 0))
        self.assertGreater(ts0, 0, "the start is the first successful load")

        r = self.post_reload()
        self.assertEqual((r.status, r.body), (200, b"reloaded\n"), r)
        self.assertEqual(self.counts()[:2], (1, 0))
        log("ok: POST /reload answered 200 once reloaded, counted")

        # log-level debug and cache.max-ttl 60 apply at once; cache.size
        # waits for a restart (and says so)
        self.assertNotRegex(self.dv.stderr_text(), r"tls: worker \d+: connection from",
                            "no DoT handshake line before debug")
        self.assertIn("max-ttl: 86400", self.base)
        self.assertIn('size: "64M"', self.base)
        m = h.udp_query(self.dv.port, "h11.example.test")
        self.assertEqual(m.answer[0].ttl, 300, "the zone's TTL before the reload: %s" % m)
        text = self.base.replace("max-ttl: 86400", "max-ttl: 60").replace(
            'size: "64M"', 'size: "32M"') + "log-level: debug\n"
        self.write_config(text)
        logged = self.hup(r"SIGHUP: configuration (checked and reloaded|refused)")
        self.assertRegex(logged, r"reloaded: \S+dnsveil.yaml \(log-level debug\)")
        self.assertRegex(logged, r"takes effect on restart: cache\.size/cache\.shards$|"
                         r"takes effect on restart: cache\.size/cache\.shards\n")
        m = h.udp_query(self.dv.port, "h12.example.test")
        self.assertEqual(m.answer[0].ttl, 60, "a fresh answer after max-ttl 60: %s" % m)
        m = h.udp_query(self.dv.port, "h11.example.test")
        self.assertGreater(m.answer[0].ttl, 60, "the cache survives: h11 keeps its TTL: %s" % m)
        off = len(self.dv.stderr_text())
        r = h.kdig_tls(self.dv.tls_port, [(WWW, "A")])
        self.assertEqual(h.kdig_answers(r), [(WWW + ".", [WWW_ADDR])], repr(r))
        self.dv.wait_log(r"tls: worker \d+: connection from 127\.0\.0\.1:\d+: sni dns\.test",
                         start=off)
        self.assertEqual(self.counts()[:2], (2, 0))
        log("ok: log-level debug (the DoT handshake line) and cache.max-ttl 60 (a fresh "
            "answer's TTL; the cached one kept) applied by SIGHUP, cache.size named as "
            "taking effect on restart")

        # an error in the file: refused whole, nothing changes
        bad = text.replace("log-level: debug", "log-level: info").replace(
            "tcp-max-inflight: 128", "tcp-max-inflight: nonsense")
        self.assertNotEqual(bad, text)
        self.write_config(bad)
        r = self.post_reload()
        body = r.body.decode()
        self.assertEqual(r.status, 500, r)
        self.assertRegex(body, r"configuration refused, the running one stays: "
                         r"\S+dnsveil\.yaml:\d+: limits\.tcp-max-inflight: ")
        self.assertRegex(self.dv.stderr_text(),
                         r"SIGHUP: configuration refused, the running one stays in force: "
                         r"\S+dnsveil\.yaml:\d+: limits\.tcp-max-inflight: ")
        self.assertEqual(self.counts()[:2], (2, 1))
        off = len(self.dv.stderr_text())
        r = h.kdig_tls(self.dv.tls_port, [(WWW, "A")])
        self.assertEqual(h.kdig_answers(r), [(WWW + ".", [WWW_ADDR])], repr(r))
        self.dv.wait_log(r"tls: worker \d+: connection from", start=off)
        log("ok: a file with an error is refused (500, FILE:LINE: KEY: reason), counted, "
            "and the debug level stays")

        # a garbage key: refused before anything is applied
        self.write_config(text)
        self.replace_file(self.key, "this is not a PEM private key\n")
        logged = self.hup(r"SIGHUP: configuration (checked and reloaded|refused)")
        self.assertRegex(logged, r"configuration refused, the running one stays in force: "
                         r"\S+dnsveil\.yaml: tls\.cert, tls\.key: TLS reload refused")
        # (the certificate watcher may refuse the garbage key too)
        ok, failed, _ = self.counts()
        self.assertEqual(ok, 2)
        self.assertGreaterEqual(failed, 2)
        self.assert_serves(h.CA, "after a refused key")
        log("ok: a garbage key is refused and counted; DoT and DoQ keep the certificate")

    def test_doq_certificate_reload(self):
        self.assert_serves(h.CA, "before the reload")
        ca2 = h.make_ca(self.pki, "ca2", "dnsveil second test CA")
        chain2, key2 = h.make_leaf(self.pki, "leaf2", "ca2")
        self.replace_file(self.cert, h.read_text(chain2))
        self.replace_file(self.key, h.read_text(key2))
        logged = self.hup(r"TLS certificate .* reloaded|configuration refused")
        self.assert_serves(ca2, "after the reload")
        self.assertRegex(logged, r"TLS certificate \S+ reloaded for DoT DoQ")
        d = self.doq(h.CA)
        self.assertNotEqual(d.rc, 0, "dnsveil-doq with the first CA: %r" % d)
        log("ok: after SIGHUP new DoQ connections get the second certificate, and the first "
            "CA no longer verifies them")

        # the key of the first certificate with the second: refused for all
        self.replace_file(self.key, h.read_text(h.KEY))
        logged = self.hup(r"TLS certificate .* reloaded|configuration refused")
        self.assertRegex(logged, r"TLS reload refused")
        # (SIGHUP's and maybe the certificate watcher's)
        self.assertGreaterEqual(self.counts()[1], 1)
        self.assert_serves(ca2, "after a mismatched key")
        log("ok: a mismatched key is refused; DoT and DoQ keep the second certificate")

    def test_zero_lost_under_load(self):
        """dnsperf over UDP and DoT while SIGHUP comes every 0.25 s and the
        certificate and key on disk change between two valid pairs: not one
        query lost or failed."""
        qfile = os.path.join(self.dv.dir, "queries.txt")
        with open(qfile, "w") as f:
            for i in range(h.NUM_HOSTS):
                f.write("h%d.example.test A\n" % i)
        # the pair behind a ..data symlink, swapped whole (what a Secret
        # volume does): a reload, by SIGHUP or by the certificate
        # watcher, never sees half of a pair
        vol, pairs = self.secret_volume()
        results = {}

        def run(name, port, *opts):
            results[name] = h.dnsperf(port, qfile, *opts)

        runs = [threading.Thread(target=run, args=("UDP", self.dv.port, "-c", "4", "-l", "6",
                                                   "-Q", "1500", "-t", "5")),
                threading.Thread(target=run, args=("DoT", self.dv.tls_port, "-m", "dot",
                                                   "-c", "4", "-l", "6", "-Q", "500",
                                                   "-t", "5"))]
        for t in runs:
            t.start()
        hups = 0
        deadline = time.monotonic() + 5
        while hups < 20 and time.monotonic() < deadline:
            h.publish(vol, "v%d" % (hups + 1), *pairs[hups % 2])
            self.dv.proc.send_signal(signal.SIGHUP)
            hups += 1
            h.wait_for(lambda: self.counts()[0] >= hups, h.scaled(5),
                       what="reload %d counted" % hups)
            time.sleep(0.2)  # the pace of the reloads over the run
        for t in runs:
            t.join(h.scaled(60))
        ok, failed, _ = self.counts()
        log("%d SIGHUPs sent; reloads counted (with the certificate watcher's): %d applied, "
            "%d refused" % (hups, ok, failed))
        self.assertEqual(failed, 0, "every reload had a valid pair")
        self.assertGreater(ok, 0)
        for name in ("UDP", "DoT"):
            res, out = results[name]
            log("%s: sent %s, completed %s, lost %s, %s qps" % (
                name, res.get("sent"), res.get("completed"), res.get("lost"), res.get("qps")))
            self.assertEqual(res["rc"], 0, "%s: dnsperf exited %s:\n%s" % (name, res["rc"], out))
            self.assertGreater(res.get("completed", 0), 0, out)
            self.assertEqual(res.get("lost"), 0, "%s: queries lost during reloads:\n%s"
                             % (name, out))
            self.assertEqual(res.get("noerror", 0), res["completed"],
                             "%s: not every answer NOERROR:\n%s" % (name, out))
        log("ok: dnsperf UDP and DoT lost nothing while %d reloads ran" % hups)


class CertWatch(h.IntegrationTest):
    """tls.cert and tls.key laid out as a Kubernetes Secret volume mounts
    them (cert.pem -> ..data/cert.pem, ..data -> ..2026_1): a new pair
    swapped in by renaming a new ..data symlink over the old one reaches
    new DoT, DoH and DoQ connections without any signal."""

    def setUp(self):
        h.IntegrationTest.setUp(self)
        self.pki = tempfile.mkdtemp(prefix="dv-reload-pki-")
        self.addCleanup(lambda: None if self._failure_count() > self._failures_at_start
                        else shutil.rmtree(self.pki, ignore_errors=True))
        self.vol = os.path.join(self.pki, "secret")
        os.mkdir(self.vol)
        self.publish("..2026_1", h.read_text(h.CERT), h.read_text(h.KEY))
        for name in ("cert.pem", "key.pem"):
            os.symlink(os.path.join("..data", name), os.path.join(self.vol, name))
        self.ub = self.start_unbound(log_queries=False)
        self.admin = h.free_port()
        self.dv = self.start_dnsveil(
            upstream=[self.ub], listen=["dns", "tls", "https", "quic"],
            config=h.doh_config(cert=os.path.join(self.vol, "cert.pem"),
                                key=os.path.join(self.vol, "key.pem")),
            extra_yaml="admin:\n  listen: [\"http://127.0.0.1:%d\"]\n" % self.admin)

    def publish(self, version, cert, key):
        h.publish(self.vol, version, cert, key)

    def served(self, ca):
        r = h.kdig_tls(self.dv.tls_port, [(WWW, "A")], ca=ca)
        dot = h.kdig_answers(r) == [(WWW + ".", [WWW_ADDR])]
        c = h.curl("--cacert", ca, "-H", "accept: application/dns-message",
                   self.dv.url(True) + "?dns=" + h.b64url(h.make_query(WWW).to_wire()))
        doh = c.status == 200
        d = self.dv.doq("--name", h.AUTH_NAME, "--ca", ca, trust=False)
        doq = d.rc == 0 and len(d.answers) == 1
        return dot, doh, doq

    def test_secret_swap_without_signal(self):
        self.assertEqual(self.served(h.CA), (True, True, True))
        ca2 = h.make_ca(self.pki, "ca2", "dnsveil second test CA")
        chain2, key2 = h.make_leaf(self.pki, "leaf2", "ca2")
        off = len(self.dv.stderr_text())
        self.publish("..2026_2", h.read_text(chain2), h.read_text(key2))
        h.wait_for(lambda: self.served(ca2) == (True, True, True), h.scaled(10),
                   what="DoT, DoH and DoQ serving the second certificate")
        self.assertEqual(self.served(h.CA), (False, False, False),
                         "the first CA must no longer verify new connections")
        logged = self.dv.stderr_text()[off:]
        log("after the ..data swap, dnsveil logged:\n" + logged.strip())
        self.assertRegex(logged, r"TLS certificate \S+ reloaded for DoT DoH DoQ")
        self.assertNotIn("refused", logged)
        r = h.curl("http://127.0.0.1:%d/metrics" % self.admin)
        self.assertEqual(h.metric(r.body.decode(), "dnsveil_reload_failures_total"), 0)
        self.assertGreaterEqual(h.metric(r.body.decode(), "dnsveil_reload_successes_total"), 1)
        log("ok: a Secret-style ..data swap reached new DoT, DoH and DoQ connections without "
            "a signal")

        # a pair that does not match: refused, the second stays in service
        self.publish("..2026_3", h.read_text(chain2), h.read_text(h.KEY))
        h.wait_for(lambda: "changed on disk: refused" in self.dv.stderr_text()[off:],
                   h.scaled(10), what="the mismatched pair refused")
        self.assertEqual(self.served(ca2), (True, True, True))
        log("ok: a mismatched pair on disk is refused and the second certificate stays")


if __name__ == "__main__":
    h.main()
