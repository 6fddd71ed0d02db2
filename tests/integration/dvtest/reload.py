"""Reloading a running dnsveil the way an operator does: the config file
replaced by a rename (as an editor or a ConfigMap update does), SIGHUP or
POST /reload on the admin listener, and the reload counters in /metrics.

ReloadMixin goes before IntegrationTest in a test class's bases; it needs
`self.dv` (a started Dnsveil) and, for the admin calls, `self.admin` (the
admin listener's port)."""

import os
import re
import signal

from .doh import curl
from .env import log, read_text, scaled
from .tls import CERT, KEY, make_ca, make_leaf

__all__ = ["ReloadMixin", "metric", "publish", "RELOADED"]

# what dnsveil logs once a reload has been applied or refused
RELOADED = r"SIGHUP: configuration (checked and reloaded|refused)"


def metric(text, name):
    """The value of the unlabelled series `name` in a /metrics page, or None."""
    m = re.search(r"(?m)^%s (\S+)$" % re.escape(name), text)
    return float(m.group(1)) if m else None


def publish(vol, version, cert, key):
    """What the kubelet does with a Secret volume: write the new pair in a
    new directory, then rename a new ..data symlink over the old one, so
    that a reader sees the whole old pair or the whole new one."""
    d = os.path.join(vol, version)
    os.mkdir(d)
    for name, data in (("cert.pem", cert), ("key.pem", key)):
        with open(os.path.join(d, name), "w") as f:
            f.write(data)
        os.chmod(os.path.join(d, name), 0o600)
    tmp = os.path.join(vol, "..data_tmp")
    os.symlink(version, tmp)
    os.rename(tmp, os.path.join(vol, "..data"))


class ReloadMixin:

    def secret_volume(self):
        """Put dnsveil's certificate and key (self.cert, self.key) behind
        a Secret-like volume under self.pki, holding the test CA's pair as
        version "v0", and make a second valid pair under a new CA.
        Returns (vol, pairs): pairs[0] the new pair, pairs[1] the first,
        each as (chain text, key text), to publish(vol, ...) in turn."""
        make_ca(self.pki, "ca2", "dnsveil second test CA")
        chain2, key2 = make_leaf(self.pki, "leaf2", "ca2")
        pairs = [(read_text(chain2), read_text(key2)),
                 (read_text(CERT), read_text(KEY))]
        vol = os.path.join(self.pki, "secret")
        os.mkdir(vol)
        publish(vol, "v0", *pairs[1])
        for path, name in ((self.cert, "cert.pem"), (self.key, "key.pem")):
            os.symlink(os.path.join(vol, "..data", name), path + ".lnk")
            os.rename(path + ".lnk", path)
        return vol, pairs

    def write_config(self, text):
        """Replace the config file whole, by a rename."""
        self.replace_file(self.dv.conf_path, text, mode=None)

    def replace_file(self, path, data, mode=0o600):
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.rename(tmp, path)

    def hup(self, pattern=RELOADED):
        """SIGHUP, then wait for `pattern` in the log; what was logged."""
        off = len(self.dv.stderr_text())
        self.dv.proc.send_signal(signal.SIGHUP)
        self.dv.wait_log(pattern, start=off)
        logged = self.dv.stderr_text()[off:]
        log("after SIGHUP, dnsveil logged:\n" + logged.strip())
        return logged

    def post_reload(self):
        r = curl("-X", "POST", "http://127.0.0.1:%d/reload" % self.admin,
                 timeout=scaled(40))
        log("POST /reload: %s %r" % (r.status, r.body))
        return r

    def metrics(self):
        r = curl("http://127.0.0.1:%d/metrics" % self.admin)
        self.assertEqual(r.status, 200, r)
        return r.body.decode()

    def counts(self):
        """Reloads that passed, reloads refused, the last success's time."""
        t = self.metrics()
        return (metric(t, "dnsveil_reload_successes_total"),
                metric(t, "dnsveil_reload_failures_total"),
                metric(t, "dnsveil_reload_last_success_timestamp_seconds"))
