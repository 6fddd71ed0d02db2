"""What the resolvers the tests start (Unbound, kresd) share: the command
prefix that runs them in a network namespace, starting one and waiting
until it answers www.example.test, and stopping it by its PID."""

import shutil
import signal
import subprocess

import dns.rcode

from .env import KDIG, pid_alive, tail, terminate, wait_for
from .wire import udp_query

__all__ = []

IP = shutil.which("ip", path="/usr/sbin:/usr/bin:/sbin:/bin") or "ip"


class ResolverProcess:
    """A subclass sets self.name, self.port, self.netns, self.dir, self.log
    and self.proc (None until started), and `kind` (for messages)."""

    kind = "resolver"

    def _prefix(self):
        return [IP, "netns", "exec", self.netns] if self.netns else []

    def _answers(self):
        """Whether it answers www.example.test (NOERROR) on its port."""
        if self.netns:
            r = subprocess.run(self._prefix() + [KDIG, "@127.0.0.1", "-p", str(self.port),
                                                 "www.example.test", "A", "+short",
                                                 "+timeout=1", "+retry=0"],
                               capture_output=True, text=True, timeout=10)
            return "192.0.2.1" in r.stdout
        return udp_query(self.port, "www.example.test", timeout=0.3).rcode() == \
            dns.rcode.NOERROR

    def _launch(self, argv, timeout):
        """Run argv (in the namespace, if any), its output to self.log, and
        wait until it answers; killed if it does not in `timeout` s."""
        if pid_alive(self.proc):
            raise RuntimeError("%s %s already running" % (self.kind, self.name))
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self._prefix() + argv, stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf, cwd=self.dir)
        logf.close()

        def ready():
            if not pid_alive(self.proc):
                raise AssertionError("%s %s exited (%s):\n%s" % (
                    self.kind, self.name, self.proc.returncode, tail(self.log)))
            return self._answers()
        try:
            wait_for(ready, timeout, interval=0.05,
                     what="%s %s on %s" % (self.kind, self.name, self.addr))
        except AssertionError:
            self.kill()
            raise
        return self

    def alive(self):
        return pid_alive(self.proc)

    def stop(self):
        terminate(self.proc, signal.SIGTERM, 5.0)

    def kill(self):
        terminate(self.proc, signal.SIGKILL, 5.0)

    def restart(self, timeout=15.0):
        self.stop()
        return self.start(timeout)
