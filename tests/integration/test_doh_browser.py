#!/usr/bin/python3
"""A real browser resolving through dnsveil's DoH: headless Chromium
(Debian's `chromium`) with the enterprise policy DnsOverHttpsMode=secure and
DnsOverHttpsTemplates=https://127.0.0.1:PORT/dns-query.

The machine's /etc is never touched: Chromium runs inside `unshare -m` with
a private copy of /etc/chromium (plus policies/managed/dnsveil-doh.json)
bind-mounted over /etc/chromium in that mount namespace only.  It trusts
certs/ca.pem through a fresh NSS db in a fresh HOME (certutil), and gets a
fresh --user-data-dir.  `--dump-dom` exits 0 even when the page failed, so
the test looks for a unique marker in the dumped DOM.

The page is served on 127.0.0.1 by a small HTTP server in this process,
under web.example.test, a name only the test Unbound knows (local-data in
example.test): the page loads only if Chromium resolved the name through
dnsveil.  Then dnsveil is stopped and a second test-zone name must fail
(secure mode never falls back to the system resolver).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

CHROMIUM = "/usr/lib/chromium/chromium"
CERTUTIL = shutil.which("certutil", path="/usr/bin:/bin") or "certutil"
UNSHARE = shutil.which("unshare", path="/usr/bin:/bin") or "unshare"
ETC_CHROMIUM = "/etc/chromium"

h.ensure_dev_certs()


class Chromium:
    """One headless Chromium run with its own policy, HOME (NSS db trusting
    the test CA) and profile, in its own mount namespace."""

    def __init__(self, template):
        self.dir = tempfile.mkdtemp(prefix="dv-chromium-")
        self.etc = os.path.join(self.dir, "etc-chromium")
        self.home = os.path.join(self.dir, "home")
        self.profile = os.path.join(self.dir, "profile")
        # a private copy of /etc/chromium with our managed policy
        shutil.copytree(ETC_CHROMIUM, self.etc, symlinks=True)
        pol = os.path.join(self.etc, "policies", "managed")
        os.makedirs(pol, exist_ok=True)
        self.policy = {"DnsOverHttpsMode": "secure", "DnsOverHttpsTemplates": template}
        with open(os.path.join(pol, "dnsveil-doh.json"), "w") as f:
            json.dump(self.policy, f)
        # a fresh NSS db (certutil -N on an existing one prompts forever)
        nss = os.path.join(self.home, ".pki", "nssdb")
        os.makedirs(nss)
        os.makedirs(self.profile)
        for args in (["-N", "--empty-password"],
                     ["-A", "-n", "dnsveil-test-ca", "-t", "C,,", "-i", h.CA]):
            r = subprocess.run([CERTUTIL] + args + ["-d", "sql:" + nss], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise AssertionError("certutil %s failed: %s%s" % (args, r.stdout, r.stderr))

    def dump_dom(self, url, netlog=None, timeout=None):
        """Returns (exit code or None on timeout, DOM, stderr, seconds)."""
        timeout = timeout or h.scaled(60)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--user-data-dir=" + self.profile]
        if netlog:
            flags.append("--log-net-log=" + netlog)
        flags += ["--dump-dom", url]
        # in the new mount namespace (propagation private: nothing leaks
        # out), our copy hides the machine's /etc/chromium for this process
        # tree only
        cmd = [UNSHARE, "--mount", "--propagation", "private", "sh", "-c",
               'mount --bind "$0" /etc/chromium && exec "$@"', self.etc, CHROMIUM] + flags
        env = {"HOME": self.home, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8",
               "TMPDIR": self.dir}
        log("running: " + " ".join(cmd))
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, start_new_session=True)
        try:
            out, err = p.communicate(timeout=timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            # the process group we created for this run, and nothing else
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = p.communicate(timeout=10)
            rc = None
        return rc, out.decode(errors="replace"), err.decode(errors="replace"), \
            time.monotonic() - t0

    def cleanup(self, keep=False):
        if not keep and not h.KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)


def require_chromium(test):
    missing = [p for p in (CHROMIUM, CERTUTIL, UNSHARE) if not os.access(p, os.X_OK)]
    if missing or not os.path.isdir(ETC_CHROMIUM):
        test.fail("missing %s: apt-get install chromium libnss3-tools util-linux (TEST_DEPS "
                  "in .ci/setup)" % (missing or ETC_CHROMIUM))


class DohBrowser(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        require_chromium(self)
        self.ub = self.start_unbound(extra_server_conf=h.loopback_local_data())
        self.dv = h.Dnsveil(listen=["dns", "https", "http"],
                            upstream=[self.ub], config=h.doh_config(), name="doh-browser")
        self._dnsveils.append(self.dv)
        self.dv.start()
        self.marker = "dnsveil-doh-browser-%s" % h.unique_label("m")
        self.page = h.PageServer(self.marker).start()
        self.addCleanup(self.page.stop)

    def _chromium(self):
        c = Chromium(self.dv.url(True))
        self.addCleanup(lambda: c.cleanup(keep=self._failure_count() > self._failures_at_start))
        return c

    def test_chromium_secure_doh(self):
        etc_before = sorted(os.listdir(ETC_CHROMIUM))
        c = self._chromium()
        netlog = os.path.join(c.dir, "netlog.json")
        url = self.page.url("web.example.test")
        st0 = self.dv.stats()
        rc, dom, err, secs = c.dump_dom(url, netlog=netlog)
        st1 = self.dv.stats()
        log("chromium --dump-dom %s: exit %s in %.1fs, DOM %d bytes, dnsveil queries +%d, "
            "page server saw %s" % (url, rc, secs, len(dom), st1["queries"] - st0["queries"],
                                    self.page.hosts))
        self.assertEqual(sorted(os.listdir(ETC_CHROMIUM)), etc_before,
                         "the machine's /etc/chromium changed")
        self.assertFalse(os.path.exists(os.path.join(ETC_CHROMIUM, "policies")),
                         "the policy leaked into the machine's /etc/chromium")
        self.assertIsNotNone(rc, "chromium did not finish within its timeout; stderr tail:\n"
                             + err[-3000:])
        self.assertIn(self.marker, dom, "the page at %s did not load through DoH (exit %s); "
                      "DOM:\n%s\nstderr tail:\n%s" % (url, rc, dom[:2000], err[-3000:]))
        self.assertIn("web.example.test:%d" % self.page.port, self.page.hosts)
        self.assertGreaterEqual(st1["queries"] - st0["queries"], 1, "dnsveil saw no query")
        self.assertGreaterEqual(self.ub.queries_for("web.example.test"), 1,
                                "Unbound never saw web.example.test")
        # the net log names the DoH server and secure mode
        with open(netlog, errors="replace") as f:
            nl = f.read()
        self.assertIn("127.0.0.1:%d/dns-query" % self.dv.https_port, nl,
                      "the DoH template is not in chromium's net log")
        self.assertRegex(nl, r'"secure_dns_mode":\s*2', "secure DoH mode not in the net log")
        log("ok: chromium (policy DnsOverHttpsMode=secure) resolved web.example.test through "
            "dnsveil DoH and loaded the page (marker found); the net log names %s in secure "
            "mode" % self.dv.url(True))

        # dnsveil gone: another test-zone name must not load
        self.stop_dnsveil(self.dv)
        url2 = self.page.url("web2.example.test")
        hosts_before = list(self.page.hosts)
        c2 = self._chromium()
        rc, dom, err, secs = c2.dump_dom(url2, netlog=os.path.join(c2.dir, "netlog.json"))
        hint = [x for x in ("ERR_NAME_NOT_RESOLVED", "ERR_CONNECTION_REFUSED",
                            "ERR_DNS_", "ERR_") if x in dom]
        log("with dnsveil stopped, chromium --dump-dom %s: exit %s in %.1fs, DOM %d bytes "
            "(%s)" % (url2, rc, secs, len(dom), hint[:1] or "no error code in the DOM"))
        self.assertNotIn(self.marker, dom, "the page loaded although dnsveil was stopped: "
                         "chromium did not use (only) DoH:\n%s" % dom[:2000])
        self.assertEqual(self.page.hosts, hosts_before,
                         "the page server was reached for web2.example.test without dnsveil")
        log("ok: with dnsveil stopped, web2.example.test does not load (secure DoH, no "
            "fallback)")


class DohBrowserClientId(h.IntegrationTest):
    """The enterprise way to tell managed browsers apart: the client ID in
    the policy's DoH template (https://127.0.0.1:PORT/dns-query/kid-7).
    kids.example.test exists only as a local record of the kids group
    (README "Policy"): Chromium loads the page under that name only if
    dnsveil mapped the template's ID to the group; with the bare template
    (the default group) the name does not exist."""

    def setUp(self):
        super().setUp()
        require_chromium(self)
        self.ub = self.start_unbound(extra_server_conf=h.loopback_local_data())
        extra = """groups:
  default: {}
  kids:
    records:
      - "kids.example.test. 60 IN A 127.0.0.1"
clients:
  - { id: "kid-*", group: kids }
"""
        cfg = h.doh_config()
        cfg["log-level"] = "debug"
        self.dv = h.Dnsveil(listen=["dns", "https"], upstream=[self.ub], config=cfg,
                            extra_yaml=extra, name="doh-browser-id")
        self._dnsveils.append(self.dv)
        self.dv.start()
        self.marker = "dnsveil-doh-browser-id-%s" % h.unique_label("m")
        self.page = h.PageServer(self.marker).start()
        self.addCleanup(self.page.stop)

    def _run(self, template, name):
        c = Chromium(template)
        self.addCleanup(lambda: c.cleanup(keep=self._failure_count() > self._failures_at_start))
        url = self.page.url(name)
        rc, dom, err, secs = c.dump_dom(url)
        log("chromium (template %s) --dump-dom %s: exit %s in %.1fs, page server saw %s" % (
            template, url, rc, secs, self.page.hosts))
        self.assertIsNotNone(rc, "chromium did not finish within its timeout; stderr tail:\n"
                             + err[-3000:])
        return dom, err

    def test_chromium_client_id_in_template(self):
        template = self.dv.url(True, path="/dns-query/kid-7")
        dom, err = self._run(template, "kids.example.test")
        self.assertIn(self.marker, dom, "kids.example.test did not load with the template %s: "
                      "DOM:\n%s\nstderr tail:\n%s" % (template, dom[:2000], err[-3000:]))
        st = self.dv.stats()["policy"]["groups"]
        self.assertGreaterEqual(st["kids"]["local"], 1, st)
        self.dv.wait_log(r"policy: client 127\.0\.0\.1 id kid-7 group kids")
        log("ok: chromium with the template %s got the kids group's local record" % template)

        # the bare template: the default group, where the name does not exist
        hosts_before = list(self.page.hosts)
        dom, err = self._run(self.dv.url(True), "kids.example.test")
        self.assertNotIn(self.marker, dom, "kids.example.test loaded without the client ID")
        self.assertEqual(self.page.hosts, hosts_before)
        self.assertEqual(self.dv.stats()["policy"]["groups"]["kids"], st["kids"])
        log("ok: with the bare template the name does not resolve (default group)")

if __name__ == "__main__":
    h.main()
