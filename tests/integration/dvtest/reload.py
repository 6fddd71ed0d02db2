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
from .env import log, scaled

__all__ = ["ReloadMixin", "metric", "RELOADED"]

# what dnsveil logs once a reload has been applied or refused
RELOADED = r"SIGHUP: configuration (checked and reloaded|refused)"


def metric(text, name):
    """The value of the unlabelled series `name` in a /metrics page, or None."""
    m = re.search(r"(?m)^%s (\S+)$" % re.escape(name), text)
    return float(m.group(1)) if m else None


class ReloadMixin:

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
