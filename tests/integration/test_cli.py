#!/usr/bin/python3
"""The command line: --version, --help, --check-config (the shipped
conf/dnsveil.yaml, and files with errors reported as FILE:LINE: KEY: reason),
quic:// upstreams accepted, bad URLs, unknown flags, and flags overriding
the file.  Every run that could start the server gets a config whose
upstream and fallback are on loopback (the built-in fallbacks are public)."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

SYNOPSIS = "dnsveil [-c FILE] [--listen URL]..."


class Cli(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="dv-cli-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.port = h.free_port()
        self.dead_port = h.free_port()  # nothing listens here

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def safe_conf(self, extra=""):
        """A valid config on loopback only."""
        return self.write("safe.yaml", (
            'workers: 1\n'
            'listen: ["dns://127.0.0.1:%d"]\n'
            'upstream: ["tcp://127.0.0.1:%d"]\n'
            'fallback: []\n' % (self.port, self.dead_port)) + extra)

    def out(self, r):
        return r.stdout + r.stderr

    def test_version(self):
        r = h.run_dnsveil(["--version"])
        self.assertEqual(r.returncode, 0, "--version exit %d: %s" % (r.returncode, self.out(r)))
        self.assertRegex(self.out(r), r"dnsveil.*\d+\.\d+\.\d+",
                         "--version should print 'dnsveil X.Y.Z': %r" % self.out(r))
        log("ok: --version: %s" % self.out(r).strip().splitlines()[0])

    def test_help(self):
        r = h.run_dnsveil(["--help"])
        self.assertEqual(r.returncode, 0, "--help exit %d" % r.returncode)
        self.assertIn(SYNOPSIS, self.out(r), "--help lacks the synopsis %r:\n%s" % (
            SYNOPSIS, self.out(r)))
        for flag in ("--listen", "--upstream", "--fallback", "--workers", "--check-config",
                     "--version", "--help"):
            self.assertIn(flag, self.out(r), "--help does not mention %s" % flag)
        log("ok: --help shows the synopsis and every flag")

    def test_unknown_flag(self):
        r = h.run_dnsveil(["-c", self.safe_conf(), "--no-such-flag"])
        self.assertNotEqual(r.returncode, 0, "unknown flag accepted: %s" % self.out(r))
        self.assertIn("no-such-flag", self.out(r), "the message should name the flag")
        log("ok: unknown flag -> exit %d: %s" % (r.returncode, self.out(r).strip()[:200]))

    def test_check_config_shipped(self):
        shipped = os.path.join(h.SOURCE_DIR, "conf", "dnsveil.yaml")
        self.assertTrue(os.path.isfile(shipped), "%s is missing" % shipped)
        # relative tls paths (certs/dev-*.pem) resolve against the working
        # directory: give it a fresh dev certificate made by our script
        script = os.path.join(h.SOURCE_DIR, "certs", "make-dev-cert.sh")
        os.makedirs(os.path.join(self.tmp, "certs"))
        g = subprocess.run(["sh", script, os.path.join(self.tmp, "certs")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(g.returncode, 0, "make-dev-cert.sh failed: %s%s" % (g.stdout, g.stderr))
        r = subprocess.run([h.dnsveil_binary(), "-c", shipped, "--check-config"],
                           capture_output=True, text=True, timeout=h.scaled(10), cwd=self.tmp,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, "--check-config on the shipped %s: exit %d:\n%s" % (
            shipped, r.returncode, self.out(r)))
        log("ok: --check-config conf/dnsveil.yaml -> 0")
        r = h.run_dnsveil(["-c", self.safe_conf(), "--check-config"])
        self.assertEqual(r.returncode, 0, "--check-config on a minimal valid file: %s" % self.out(r))
        log("ok: --check-config on a minimal valid file -> 0")

    def assert_file_error(self, text, line, key, what):
        path = self.write("bad-%d.yaml" % line, text)
        r = h.run_dnsveil(["-c", path, "--check-config"])
        msg = self.out(r)
        self.assertNotEqual(r.returncode, 0, "%s: --check-config accepted it:\n%s" % (what, text))
        m = re.search(r"(%s|%s):%d:" % (re.escape(path), re.escape(os.path.basename(path)), line),
                      msg)
        self.assertIsNotNone(m, "%s: message should contain '%s:%d:' (FILE:LINE: KEY: reason): %r"
                             % (what, path, line, msg))
        self.assertIn(key, msg[m.start():], "%s: message should name the key %r: %r" % (
            what, key, msg))
        log("ok: %s -> exit %d: %s" % (what, r.returncode, msg.strip().splitlines()[-1][:200]))

    def test_check_config_certificate_and_key(self):
        """--check-config loads the certificate and key the way the TLS,
        HTTPS and QUIC listeners will: garbage in the certificate file and a
        key that does not match it fail, naming the file (they used to pass
        and fail only at start-up)."""
        certs = os.path.join(h.SOURCE_DIR, "certs")
        cert, key = os.path.join(certs, "dev-cert.pem"), os.path.join(certs, "dev-key.pem")
        if not os.path.isfile(cert):
            subprocess.run(["sh", os.path.join(certs, "make-dev-cert.sh")], check=True,
                           capture_output=True, timeout=60)
        garbage = self.write("garbage.pem", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                             "-----END CERTIFICATE-----\n")
        other_key = os.path.join(self.tmp, "other-key.pem")
        subprocess.run(["openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout",
                        "-out", other_key], check=True, capture_output=True, timeout=30)
        for listen in ("tls://127.0.0.1:%d" % self.port,
                       "https://127.0.0.1:%d/dns-query" % self.port,
                       "quic://127.0.0.1:%d" % self.port):
            for c, k, bad, what in ((garbage, key, "garbage.pem", "a garbage certificate"),
                                    (cert, other_key, "other-key.pem", "a key of another pair"),
                                    (cert, key, None, "the matching pair")):
                conf = self.write("tls.yaml", (
                    'workers: 1\nlisten: ["%s"]\nupstream: ["tcp://127.0.0.1:%d"]\n'
                    'fallback: []\ntls: { cert: "%s", key: "%s" }\n' % (
                        listen, self.dead_port, c, k)))
                r = h.run_dnsveil(["-c", conf, "--check-config"])
                if bad is None:
                    self.assertEqual(r.returncode, 0, "%s, %s: %s" % (listen, what, self.out(r)))
                    continue
                self.assertNotEqual(r.returncode, 0, "%s with %s: --check-config said %r" % (
                    listen, what, self.out(r)))
                self.assertIn(bad, self.out(r), "%s with %s: the message should name %s: %r" % (
                    listen, what, bad, self.out(r)))
                log("ok: %s with %s -> exit %d: %s" % (listen, what, r.returncode,
                                                       self.out(r).strip()))

    def test_second_process_on_the_same_address(self):
        """A second dnsveil on an address another process serves refuses to
        start, naming the listener (SO_REUSEPORT used to let it join the
        group and take half the traffic); the first keeps serving; and a
        restart on the same addresses, with connections of the old process
        in TIME_WAIT, starts."""
        certs = os.path.join(h.SOURCE_DIR, "certs")
        cert, key = os.path.join(certs, "dev-cert.pem"), os.path.join(certs, "dev-key.pem")
        if not os.path.isfile(cert):
            subprocess.run(["sh", os.path.join(certs, "make-dev-cert.sh")], check=True,
                           capture_output=True, timeout=60)
        ub = self.start_unbound()
        ports = {s: h.free_port() for s in ("tls", "https", "quic", "udp")}
        listen = ["dns://127.0.0.1:{port}", "tls://127.0.0.1:%d" % ports["tls"],
                  "https://127.0.0.1:%d/dns-query" % ports["https"],
                  "quic://127.0.0.1:%d" % ports["quic"], "udp://127.0.0.1:%d" % ports["udp"]]
        cfg = h.base_config(tls={"cert": cert, "key": key})
        a = self.start_dnsveil(upstream=[ub], config=cfg, listen=listen)
        # a TCP query leaves a connection of this process in TIME_WAIT
        self.assertEqual(h.tcp_query(a.port, "www.example.test").rcode(), 0)
        for url in [x.format(port=a.port) for x in listen]:
            conf = self.write("second.yaml", h.to_yaml(dict(
                cfg, workers=2, listen=[url], upstream=[ub.url()], fallback=[])))
            r = subprocess.run([h.dnsveil_binary(), "-c", conf], capture_output=True,
                               text=True, timeout=h.scaled(10), stdin=subprocess.DEVNULL)
            self.assertNotEqual(r.returncode, 0, "a second dnsveil on %s started" % url)
            self.assertIn("address in use by another process", r.stderr, r.stderr)
            self.assertIn(url, r.stderr, "the message names the listener: %r" % r.stderr)
            log("ok: second dnsveil on %s -> exit %d: %s" % (
                url, r.returncode, r.stderr.strip().splitlines()[-1]))
        self.assertEqual(h.udp_query(a.port, "www.example.test").rcode(), 0,
                         "the first dnsveil stopped answering")
        a.stop()
        b = self.start_dnsveil(upstream=[ub], config=cfg,
                               listen=[x.format(port=a.port) for x in listen], port=a.port)
        self.assertEqual(h.tcp_query(b.port, "www.example.test").rcode(), 0)
        log("ok: a restart on the same addresses starts (TIME_WAIT does not count)")

    def test_check_config_errors(self):
        base = ('workers: 1\n'
                'listen: ["dns://127.0.0.1:%d"]\n'
                'upstream: ["tcp://127.0.0.1:%d"]\n'
                'fallback: []\n' % (self.port, self.dead_port))
        self.assert_file_error(base + "bogus-key: 3\n", 5, "bogus-key", "unknown top-level key")
        self.assert_file_error(base + "pool:\n  connections: 2\n  frobnicate: 1\n", 7,
                               "frobnicate", "unknown key in pool")
        self.assert_file_error(base.replace("workers: 1", "workers: 100000"), 1, "workers",
                               "workers out of range")
        self.assert_file_error(base.replace("workers: 1", "workers: lots"), 1, "workers",
                               "workers not a number")
        self.assert_file_error(base + "pool: { hedge-delay-ms: -5 }\n", 5, "hedge-delay-ms",
                               "negative hedge delay")
        self.assert_file_error(base.replace('upstream: ["tcp://127.0.0.1:%d"]' % self.dead_port,
                                            'upstream: ["tcp://127.0.0.1"]'), 3, "upstream",
                               "upstream URL without port")
        # YAML syntax error
        path = self.write("broken.yaml", base + "pool: { connections: 2\n")
        r = h.run_dnsveil(["-c", path, "--check-config"])
        self.assertNotEqual(r.returncode, 0, "broken YAML accepted")
        self.assertIn(os.path.basename(path), self.out(r), "YAML error should name the file")
        log("ok: broken YAML -> exit %d" % r.returncode)
        # missing file
        r = h.run_dnsveil(["-c", os.path.join(self.tmp, "absent.yaml"), "--check-config"])
        self.assertNotEqual(r.returncode, 0, "missing config file accepted")
        self.assertIn("absent.yaml", self.out(r))
        log("ok: missing file -> exit %d" % r.returncode)

    def test_quic_upstream_accepted(self):
        """quic:// (DoQ) was the last upstream scheme refused as "not
        implemented yet": it is accepted now, as upstream and as fallback,
        and still needs its #NAME."""
        url = "quic://127.0.0.1:%d#dns.test" % self.dead_port
        for flag in ("--upstream", "--fallback"):
            r = h.run_dnsveil(["-c", self.safe_conf(), flag, url, "--check-config"])
            self.assertEqual(r.returncode, 0, "%s %s: exit %d: %s" % (
                flag, url, r.returncode, self.out(r)))
            self.assertNotIn("not implemented", self.out(r).lower(), self.out(r))
        r = h.run_dnsveil(["-c", self.safe_conf(), "--upstream",
                           "quic://127.0.0.1:%d" % self.dead_port, "--check-config"])
        self.assertNotEqual(r.returncode, 0, "quic:// upstream without #NAME: exit 0")
        self.assertIn("#NAME", self.out(r), self.out(r))
        log("ok: --upstream/--fallback quic://...#NAME accepted; without #NAME -> exit %d" % (
            r.returncode))

    def test_quic_listener_needs_certificate(self):
        r = h.run_dnsveil(["-c", self.safe_conf(), "--listen", "quic://127.0.0.1:%d" % self.port])
        self.assertNotEqual(r.returncode, 0, "quic:// listener without tls.cert: exit 0")
        self.assertIn("tls.cert", self.out(r), self.out(r))
        log("ok: --listen quic:// without a certificate -> exit %d: %s" % (
            r.returncode, self.out(r).strip()[:200]))

    def test_bad_urls(self):
        conf = self.safe_conf()
        for flag, url in (("--listen", "udp://127.0.0.1"),           # no port
                          ("--listen", "ftp://127.0.0.1:%d" % self.port),
                          ("--listen", "dns://999.0.0.1:%d" % self.port),
                          ("--listen", "dns://[::1:%d" % self.port),
                          ("--listen", "127.0.0.1:%d" % self.port),   # no scheme
                          ("--listen", "udp://127.0.0.1:99999"),
                          ("--upstream", "tcp://localhost:53"),       # host names refused
                          ("--upstream", "dns://127.0.0.1:%d" % self.dead_port),  # listener-only
                          ("--fallback", "tcp://127.0.0.1:"),
                          ("--workers", "-1")):
            r = h.run_dnsveil(["-c", conf, flag, url])
            self.assertNotEqual(r.returncode, 0, "%s %s accepted: %s" % (flag, url, self.out(r)))
            self.assertTrue(self.out(r).strip(), "%s %s: exit %d without a message" % (
                flag, url, r.returncode))
            log("ok: %s %s -> exit %d: %s" % (flag, url, r.returncode,
                                              self.out(r).strip().splitlines()[-1][:160]))

    def test_flags_override_file(self):
        ub = self.start_unbound()
        file_port = h.free_port()
        flag_port = h.free_port()
        conf = self.write("override.yaml", (
            'workers: 1\n'
            'listen: ["dns://127.0.0.1:%d"]\n'
            'upstream: ["tcp://127.0.0.1:%d"]\n'
            'fallback: []\n' % (file_port, self.dead_port)))
        d = h.Dnsveil(name="override", port=flag_port, raw_args=[
            "-c", conf, "--listen", "dns://127.0.0.1:%d" % flag_port,
            "--upstream", ub.url("tcp"), "--workers", "2"])
        self._dnsveils.append(d)
        d.start()
        m = h.udp_query(flag_port, "www.example.test")
        self.assertEqual([x[3] for x in h.rrset_texts(m)], ["192.0.2.1"],
                         "--upstream from the flag should be used: %s" % m)
        self.assertIsNone(h.udp_raw(file_port, h.make_query("www.example.test").to_wire(),
                                    timeout=0.5), "the file's listener is still served")
        log("ok: --listen/--upstream flags replaced the file's listen/upstream")
        self.stop_dnsveil(d)
        log("ok: SIGTERM -> exit 0")


if __name__ == "__main__":
    h.main()
