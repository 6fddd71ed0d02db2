#!/usr/bin/python3
"""dnsveil as a systemd service (Type=notify).  dnsveil speaks the
sd_notify datagram protocol to $NOTIFY_SOCKET; here the test plays the
service manager with a Unix datagram socket of its own:

  - READY=1 is the first message, and comes only once every listener is
    bound: at the moment it arrives, a UDP query, a TCP query and a DoT
    handshake and query are each answered at the first try;
  - SIGHUP: RELOADING=1 with MONOTONIC_USEC (CLOCK_MONOTONIC, what systemd
    >= 253 matches a reload with), then READY=1 when the reload is done,
    also when the new file is refused;
  - SIGTERM: STOPPING=1, then exit 0;
  - an abstract socket address (@name) works as well as a path;
  - without NOTIFY_SOCKET nothing changes (every other test file);
  - as PID 1 of its own PID namespace (what a container runtime does with
    the image's ENTRYPOINT), SIGHUP and SIGTERM still reach it: the kernel
    drops signals to a namespace's init that have no handler, unless they
    are blocked, and dnsveil blocks them and takes them with sigwaitinfo.

The unit file itself (conf/dnsveil.service) is checked with
systemd-analyze in test_install.py."""

import os
import shutil
import signal
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


class Manager:
    """The service manager's end: a bound AF_UNIX datagram socket."""

    def __init__(self, abstract=False):
        self.dir = tempfile.mkdtemp(prefix="dv-notify-")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "dv-notify-%d-%d" % (os.getpid(), h.free_port())
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = os.path.join(self.dir, "notify")
            self.sock.bind(self.address)
        self.messages = []

    def recv(self, timeout):
        """The next message as a dict of its assignments (None: timeout)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return None
        text = data.decode()
        self.messages.append(text)
        log("notify: %r" % text)
        return dict(line.split("=", 1) for line in text.split("\n") if line)

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, True)


class SdNotify(h.IntegrationTest):

    def setUp(self):
        super().setUp()
        self.u = self.start_unbound()

    def manager(self, abstract=False):
        m = Manager(abstract)
        self.addCleanup(m.close)
        return m

    def make(self, m, **kw):
        d = h.Dnsveil(upstream=[self.u], listen=["dns", "tls"], config=h.dot_config(),
                      env={"NOTIFY_SOCKET": m.address}, **kw)
        self._dnsveils.append(d)
        return d

    def test_ready_after_listeners_bound(self):
        m = self.manager()
        d = self.make(m)
        got = {}

        def manager_side():
            # what systemd does with READY=1: start what depends on the
            # service at once, so every listener must serve right then
            msg = m.recv(h.scaled(20))
            got["ready"] = msg
            if msg != {"READY": "1"}:
                return
            try:
                got["udp"] = h.udp_query(d.port, "www.example.test").rcode()
                got["tcp"] = h.tcp_query(d.port, "www.example.test").rcode()
                s = h.tls_connect(d.tls_port)
                try:
                    got["tls"] = h.stream_query(s, h.make_query("www.example.test"))[1].rcode()
                finally:
                    s.close()
            except Exception as e:  # reported below, in the test's thread
                got["error"] = repr(e)

        t = threading.Thread(target=manager_side)
        t.start()
        d.start()
        t.join(h.scaled(30))
        self.assertFalse(t.is_alive(), "the manager's side did not finish")
        self.assertEqual(got.get("ready"), {"READY": "1"},
                         "first message %r, expected READY=1 (all: %r)" % (
                             got.get("ready"), m.messages))
        self.assertNotIn("error", got, "a listener did not serve when READY=1 came: %s"
                         % got.get("error"))
        self.assertEqual((got["udp"], got["tcp"], got["tls"]), (0, 0, 0),
                         "answers at READY=1: %r" % got)
        log("ok: READY=1 first; at that moment UDP, TCP and DoT each answered at once")

    def reload_cycle(self, m, d):
        before = int(time.monotonic() * 1e6)
        d.proc.send_signal(signal.SIGHUP)
        msg = m.recv(h.scaled(10))
        after = int(time.monotonic() * 1e6)
        self.assertIsNotNone(msg, "no message after SIGHUP")
        self.assertEqual(msg.get("RELOADING"), "1", "after SIGHUP: %r" % msg)
        self.assertIn("MONOTONIC_USEC", msg, "RELOADING=1 without MONOTONIC_USEC: %r" % msg)
        usec = int(msg["MONOTONIC_USEC"])
        self.assertTrue(before <= usec <= after,
                        "MONOTONIC_USEC %d not within the SIGHUP's window [%d, %d]: not "
                        "CLOCK_MONOTONIC in microseconds" % (usec, before, after))
        msg = m.recv(h.scaled(10))
        self.assertEqual(msg, {"READY": "1"}, "after RELOADING=1: %r, expected READY=1" % msg)

    def test_reload_and_stop(self):
        m = self.manager()
        d = self.make(m)
        d.start()
        self.assertEqual(m.recv(h.scaled(10)), {"READY": "1"})
        self.reload_cycle(m, d)
        d.wait_log("SIGHUP: configuration checked")
        log("ok: SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1")
        # a file that is refused: still RELOADING=1 then READY=1 (the old
        # configuration stays in force, the service is ready again)
        with open(d.conf_path, "a") as f:
            f.write("no-such-key: 1\n")
        self.reload_cycle(m, d)
        d.wait_log("SIGHUP: configuration refused")
        self.assert_healthy(d, "after a refused reload")
        log("ok: refused reload: RELOADING=1, READY=1, still serving")
        d.proc.send_signal(signal.SIGTERM)
        msg = m.recv(h.scaled(10))
        self.assertEqual(msg, {"STOPPING": "1"}, "after SIGTERM: %r" % msg)
        self.assertEqual(d.proc.wait(h.scaled(10)), 0, "exit code after SIGTERM")
        d.returncode = 0
        self.assertIsNone(m.recv(0.2), "a message after STOPPING=1: %r" % m.messages)
        log("ok: SIGTERM: STOPPING=1, exit 0; messages: %r" % m.messages)

    def test_abstract_socket(self):
        m = self.manager(abstract=True)
        d = self.make(m)
        d.start()
        self.assertEqual(m.recv(h.scaled(10)), {"READY": "1"},
                         "nothing on the abstract socket %s" % m.address)
        self.reload_cycle(m, d)
        log("ok: READY=1, RELOADING=1 and READY=1 on abstract socket %s" % m.address)


class PidOne(h.IntegrationTest):

    def test_signals_as_pid_1(self):
        u = self.start_unbound()
        d = h.Dnsveil(upstream=[u])  # its config and port; started here
        self.addCleanup(d.cleanup)
        env = dict(os.environ)
        if h.SANITIZE:
            env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        with open(d.stderr_path, "ab") as err:
            proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", d.bin] +
                                    d.args, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    cwd=d.dir, env=env)

        def cleanup():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.addCleanup(cleanup)

        def child():
            try:
                with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as f:
                    pids = f.read().split()
            except OSError:
                return None
            return int(pids[0]) if pids else None
        def answers():
            self.assertIsNone(proc.poll(), "exited:\n%s" % h.tail(d.stderr_path))
            try:
                return h.udp_query(d.port, "www.example.test", timeout=0.5).rcode() == 0
            except Exception:
                return False
        h.wait_for(lambda: child() is not None and answers(), h.scaled(15),
                   what="dnsveil under unshare --pid to answer")
        pid = child()
        with open("/proc/%d/status" % pid) as f:
            nspid = [x for x in f.read().splitlines() if x.startswith("NSpid:")][0].split()
        self.assertEqual(nspid[-1], "1", "dnsveil is not PID 1 in its namespace: %s" % nspid)
        os.kill(pid, signal.SIGHUP)
        d.wait_log("SIGHUP: configuration checked")
        self.assertEqual(h.udp_query(d.port, "www.example.test").rcode(), 0)
        os.kill(pid, signal.SIGTERM)
        rc = proc.wait(h.scaled(10))
        self.assertEqual(rc, 0, "exit code of PID 1 after SIGTERM:\n%s" % h.tail(d.stderr_path))
        d.wait_log("draining")
        with open(d.stderr_path, errors="replace") as f:
            reports = h.sanitizer_reports(f.read())
        self.assertEqual(reports, [], "sanitizer reports")
        log("ok: as PID 1 (NSpid %s): SIGHUP reloaded, SIGTERM drained, exit 0" % " ".join(
            nspid[1:]))


if __name__ == "__main__":
    h.main()
