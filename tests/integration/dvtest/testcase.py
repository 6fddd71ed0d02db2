"""The test base class and the runner every test file ends with: it
reports the skips of the run and fails it on any skip not on the allow-list
(ALLOWED_SKIPS: a test that skips when what it tests is missing is a
defect; a missing tool is installed by .ci/setup instead)."""

import os
import shutil
import sys
import tempfile
import unittest

from .env import log, tail
from .daemon import Dnsveil
from .upstream import SlowAuthority, Unbound, encrypted_resolver, encrypted_unbound, resolver
from .clients import kdig
from .tls import CERT, KEY

#: "test_file.Class.test_method": why that test may skip.  Keep it empty:
#: every entry is a test that proves nothing in some runs.
ALLOWED_SKIPS = {}


class IntegrationTest(unittest.TestCase):
    """Base class: starts what a test asks for and always cleans up (our own
    processes, by PID).  After each test: every dnsveil it started must have
    no sanitizer report in its stderr.  On failure the temp dirs are kept
    and their paths and the dnsveil stderr tail are printed."""

    def setUp(self):
        self._unbounds = []
        self._dnsveils = []
        self._slows = []
        self._failures_at_start = self._failure_count()
        self.addCleanup(self._cleanup)

    def _failure_count(self):
        res = getattr(getattr(self, "_outcome", None), "result", None)
        if res is None:
            return 0
        return len(res.failures) + len(res.errors)

    def private_pki(self, prefix):
        """A temporary copy of the test certificate and key that a test may
        replace (self.pki, self.cert, self.key); kept when the test fails."""
        self.pki = tempfile.mkdtemp(prefix=prefix)
        self.addCleanup(lambda: None if self._failure_count() > self._failures_at_start
                        else shutil.rmtree(self.pki, ignore_errors=True))
        self.cert = os.path.join(self.pki, "cert.pem")
        self.key = os.path.join(self.pki, "key.pem")
        shutil.copy(CERT, self.cert)
        shutil.copy(KEY, self.key)

    def start_slow(self, delay=1.0, address="192.0.2.200"):
        s = SlowAuthority(delay=delay, address=address)
        self._slows.append(s)
        return s.start()

    def start_unbound(self, whoami="local", slow=None, **kw):
        u = Unbound(whoami=whoami, slow=slow, **kw)
        self._unbounds.append(u)
        return u.start()

    def start_resolver(self, whoami="local", slow=None, **kw):
        """The resolver of DV_RESOLVER (Unbound or kresd), started."""
        u = resolver(whoami=whoami, slow=slow, **kw)
        self._unbounds.append(u)
        return u.start()

    def start_encrypted_resolver(self, whoami, scheme):
        """encrypted_resolver(): Unbound or kresd by DV_RESOLVER, started."""
        u = encrypted_resolver(whoami, scheme)
        self._unbounds.append(u)
        u.start()
        log("%s %s: plain %d, %s %d" % (type(u).__name__.lower(), whoami, u.port,
                                        "DoT" if scheme == "tls" else "DoH",
                                        getattr(u, scheme + "_port")))
        return u

    def start_encrypted_unbound(self, whoami, scheme):
        """encrypted_unbound() (DoT for "tls", DoH for "https"), started."""
        u = encrypted_unbound(whoami, scheme)
        self._unbounds.append(u)
        u.start()
        log("unbound %s: plain %d, %s %d" % (whoami, u.port, "DoT" if scheme == "tls" else "DoH",
                                            getattr(u, scheme + "_port")))
        return u

    def start_dnsveil(self, *args, **kw):
        d = Dnsveil(*args, **kw)
        self._dnsveils.append(d)
        return d.start()

    def tearDown(self):
        """Every dnsveil still running must exit 0 on SIGTERM, and none may
        have a sanitizer report."""
        problems = []
        for d in self._dnsveils:
            try:
                if d.alive():
                    d.stop()
                elif d.proc is not None and d.returncode is None and not d.killed:
                    problems.append("dnsveil (pid %d) died during the test with exit code %s:\n%s"
                                    % (d.proc.pid, d.proc.returncode, tail(d.stderr_path)))
            except AssertionError as e:
                problems.append(str(e))
            try:
                d.check_sanitizers()
            except AssertionError as e:
                problems.append(str(e))
        if problems:
            self.fail("\n".join(problems))

    def _cleanup(self):
        failed = self._failure_count() > self._failures_at_start
        for d in self._dnsveils:
            if failed:
                log("--- dnsveil stderr (%s), tail:\n%s" % (d.stderr_path, tail(d.stderr_path)))
            d.cleanup(keep=failed)
        for u in self._unbounds:
            u.cleanup(keep=failed)
        for s in self._slows:
            s.stop()
        if failed:
            log("temporary directories kept: %s" % " ".join(
                [d.dir for d in self._dnsveils] + [u.dir for u in self._unbounds]))

    def assert_healthy(self, d, what=""):
        """dnsveil is alive and kdig gets www.example.test A over UDP and TCP."""
        self.assertTrue(d.alive(), "dnsveil died %s(exit %s):\n%s" % (
            what, d.proc.returncode, tail(d.stderr_path)))
        for tcp in (False, True):
            r = kdig(d.port, "www.example.test", "A", tcp=tcp)
            self.assertEqual(r.status, "NOERROR", "kdig %s after %s: %r" % (
                "TCP" if tcp else "UDP", what, r))
            self.assertIn("192.0.2.1", [x[3] for x in r.records()],
                          "kdig %s after %s: %r" % ("TCP" if tcp else "UDP", what, r))
        log("ok: dnsveil alive and answering kdig over UDP and TCP %s" % what)

    def stop_dnsveil(self, d):
        """SIGTERM and assert exit 0 (then a sanitizer check)."""
        rc = d.stop()
        d.check_sanitizers()
        return rc


def skip_report(result, module):
    """Print every skip of `result` and return those not allowed."""
    unexpected = []
    for test, reason in result.skipped:
        key = "%s.%s.%s" % (module, type(test).__name__, test._testMethodName)
        allowed = key in ALLOWED_SKIPS
        log("dvtest skip: %s: %s%s" % (key, reason,
                                       " (allowed: %s)" % ALLOWED_SKIPS[key] if allowed else ""))
        if not allowed:
            unexpected.append((key, reason))
    log("dvtest skips: %d skipped, %d not allowed (%s)" % (
        len(result.skipped), len(unexpected), module))
    for key, reason in unexpected:
        log("UNEXPECTED SKIP %s: %s" % (key, reason))
    return unexpected


def main():
    """unittest.main() of a test file (arguments pick tests as usual),
    then the skip report: the run fails on a failure, an error, an
    unexpected success (an @expectedFailure target met: drop the marker)
    or a skip that ALLOWED_SKIPS does not name."""
    module = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    prog = unittest.main(verbosity=2, exit=False)
    result = prog.result
    unexpected = skip_report(result, module)
    ok = result.wasSuccessful() and not unexpected
    sys.exit(0 if ok else 1)
