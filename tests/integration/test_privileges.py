#!/usr/bin/python3
"""Privileges (user:, group:): started as root, dnsveil binds port 53 and
853 on a loopback address, then runs as nobody:nogroup with no
supplementary group, no capability (effective, permitted, inheritable,
ambient, bounding) and no_new_privs, as /proc/PID/status shows for every
thread, and still answers over UDP, TCP and DoT; a SIGHUP then cannot
re-read a root-only config file or key (the documented consequence) and
what runs stays in service.  Started unprivileged by setpriv with only
CAP_NET_BIND_SERVICE (what systemd's AmbientCapabilities= gives), it binds
port 53, drops that capability and answers.  An unknown user, or another
user when not root, is refused with a clear error (also by
--check-config).  The tests run as root (the CI container does)."""

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dns.rcode  # noqa: E402

import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
UNPRIVILEGED = [SETPRIV, "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                "--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service"]


def free_loopback(ports=(53, 853)):
    """A 127.x.y.z address whose privileged ports are free (UDP and TCP)."""
    for _ in range(50):
        addr = "127.%d.%d.%d" % (random.randint(64, 250), random.randint(0, 255),
                                 random.randint(1, 254))
        ok = True
        for port in ports:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                s = socket.socket(socket.AF_INET, kind)
                try:
                    s.bind((addr, port))
                except OSError:
                    ok = False
                finally:
                    s.close()
        if ok:
            return addr
    raise AssertionError("no loopback address with ports %s free" % (ports,))


def proc_status(pid, tid=None):
    path = "/proc/%d/status" % pid if tid is None else "/proc/%d/task/%d/status" % (pid, tid)
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


class Privileges(h.IntegrationTest):

    def dnsveil(self, addr, listen, config, **kw):
        cfg = h.dot_config()
        cfg.update(config)
        d = h.Dnsveil(listen=listen, upstream=[self.ub], config=cfg, port=53, host=addr,
                      name="privileges", **kw)
        self._dnsveils.append(d)
        return d

    def setUp(self):
        super().setUp()
        self.assertEqual(os.geteuid(), 0, "these tests start dnsveil as root")
        self.ub = self.start_unbound(log_queries=False)

    def assert_no_caps(self, st, bounding_empty=True):
        for k in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            self.assertEqual(int(st[k], 16), 0, "%s: %s" % (k, st))
        if bounding_empty:
            self.assertEqual(int(st["CapBnd"], 16), 0, "CapBnd: %s" % st)
        self.assertEqual(st["NoNewPrivs"], "1", st)

    def test_root_becomes_nobody(self):
        addr = free_loopback()
        d = self.dnsveil(addr, ["dns://%s:53" % addr, "tls://%s:853" % addr],
                         {"user": "nobody", "group": "nogroup"}, workers=2)
        d.start()
        pid = d.proc.pid
        tids = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
        for tid in [None] + tids:
            st = proc_status(pid, tid)
            self.assertEqual(st["Uid"].split(), ["65534"] * 4, st)
            self.assertEqual(st["Gid"].split(), ["65534"] * 4, st)
            self.assertEqual(st["Groups"], "", st)
            self.assert_no_caps(st)
        log("pid %d and its %d threads: Uid/Gid 65534 x4, no groups, CapEff/Prm/Inh/Amb/Bnd 0, "
            "NoNewPrivs 1" % (pid, len(tids)))
        self.assertTrue(d.log_lines(r"running as nobody:nogroup \(uid 65534, gid 65534\), "
                                    r"no capabilities"), h.tail(d.stderr_path))
        m = h.udp_query(53, "www.example.test", host=addr)
        self.assertEqual(h.rrset_texts(m)[0][3], "192.0.2.1", m)
        m = h.tcp_query(53, "www.example.test", host=addr)
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        r = h.kdig(853, "www.example.test", "A", "+tls", "+tls-ca=%s" % h.CA,
                   "+tls-hostname=%s" % h.AUTH_NAME, server=addr)
        self.assertEqual(r.status, "NOERROR", r)
        log("ok: answers on %s:53 over UDP and TCP, and DoT on :853" % addr)

        # a SIGHUP re-reads the config file as nobody: in the harness's
        # root-only directory it cannot
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"SIGHUP: configuration refused, the running one stays in force: "
                   r"\S+dnsveil.yaml: Permission denied", h.scaled(5))
        # readable, it is read, but the key is root's (0600): the reload
        # cannot read it and keeps the certificate in service
        os.chmod(d.dir, 0o755)
        os.chmod(d.conf_path, 0o644)
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"SIGHUP: configuration refused, the running one stays in force: "
                   r"\S+dnsveil.yaml: tls.key: '\S+dev-key.pem': Permission denied",
                   h.scaled(5))
        r = h.kdig(853, "www.example.test", "A", "+tls", "+tls-ca=%s" % h.CA,
                   "+tls-hostname=%s" % h.AUTH_NAME, server=addr)
        self.assertEqual(r.status, "NOERROR", r)
        self.assertEqual(d.stop(), 0)
        log("ok: SIGHUP as nobody: a root-only config file or key cannot be re-read, the "
            "running config and certificate stay, DoT still answers, SIGTERM exit 0")

    def test_log_threads_drop_too(self):
        """The query log's writer and libfstrm's I/O thread start after the
        drop: they run as nobody without capabilities like the workers
        (capabilities are per thread), and the files they write work: the
        query log's is opened before the drop, dnstap.file (opened by
        libfstrm's thread) is handed to nobody."""
        addr = free_loopback(ports=(53,))
        logdir = tempfile.mkdtemp(prefix="dv-privileges-logs-")
        self.addCleanup(shutil.rmtree, logdir, True)
        os.chmod(logdir, 0o755)  # root's, like /var/log: nobody can pass
        qfile = os.path.join(logdir, "queries.log")
        tfile = os.path.join(logdir, "dnstap.fstrm")
        d = self.dnsveil(addr, ["dns://%s:53" % addr],
                         {"user": "nobody", "group": "nogroup",
                          "log": {"queries": "all", "query-file": qfile},
                          "dnstap": {"file": tfile}}, workers=1)
        d.start()
        pid = d.proc.pid
        tids = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
        names = []
        for tid in tids:
            st = proc_status(pid, tid)
            names.append(st["Name"])
            self.assertEqual(st["Uid"].split(), ["65534"] * 4, st)
            self.assert_no_caps(st)
        log("threads %s: all nobody, no capabilities" % names)
        self.assertGreaterEqual(len(tids), 4, names)  # main, worker, log writer, fstrm
        m = h.udp_query(53, "www.example.test", host=addr)
        self.assertEqual(h.rrset_texts(m)[0][3], "192.0.2.1", m)
        self.assertEqual(d.stop(), 0)
        with open(qfile) as f:
            self.assertIn("www.example.test.", f.read())
        self.assertEqual(os.stat(tfile).st_uid, 65534)
        self.assertGreater(os.path.getsize(tfile), 100)
        log("ok: query log and dnstap file written as nobody (%d bytes of dnstap)"
            % os.path.getsize(tfile))

    def test_unprivileged_with_net_bind_service(self):
        addr = free_loopback(ports=(53,))
        d = self.dnsveil(addr, ["dns://%s:53" % addr], {"tls": {}}, workers=1,
                         wrapper=UNPRIVILEGED)
        # nobody reads the config (the directory is root's 0700 otherwise)
        os.chmod(d.dir, 0o755)
        os.chmod(d.conf_path, 0o644)
        d.start()
        st = proc_status(d.proc.pid)
        log("setpriv nobody +net_bind_service: %s" % {k: st[k] for k in (
            "Uid", "Gid", "CapEff", "CapPrm", "CapAmb", "CapBnd", "NoNewPrivs")})
        self.assertEqual(st["Uid"].split(), ["65534"] * 4, st)
        self.assert_no_caps(st, bounding_empty=False)
        m = h.udp_query(53, "www.example.test", host=addr)
        self.assertEqual(h.rrset_texts(m)[0][3], "192.0.2.1", m)
        self.assertEqual(d.stop(), 0)
        log("ok: unprivileged with only CAP_NET_BIND_SERVICE: bound %s:53, the capability "
            "dropped after binding, answers" % addr)

    def test_refusals(self):
        d = self.dnsveil("127.0.0.1", ["dns://127.0.0.1:%d" % h.free_port()],
                         {"user": "no-such-user-dv"})
        r = h.run_dnsveil(["-c", d.conf_path])
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("user: no-such-user-dv: no such user", r.stderr)
        r = h.run_dnsveil(["-c", d.conf_path, "--check-config"])
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("user: no-such-user-dv: no such user", r.stderr)
        r = h.run_dnsveil(["-c", d.conf_path, "--user", "nobody", "--group", "no-such-group-dv"])
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("group: no-such-group-dv: no such group", r.stderr)
        log("ok: unknown user refused at start and by --check-config; --user/--group replace "
            "the file's user: (an unknown --group refused)")

        port = h.free_port()
        d2 = self.dnsveil("127.0.0.1", ["dns://127.0.0.1:%d" % port], {"user": "daemon"})
        os.chmod(d2.dir, 0o755)
        os.chmod(d2.conf_path, 0o644)
        r = subprocess.run(UNPRIVILEGED + [h.dnsveil_binary(), "-c", d2.conf_path],
                           capture_output=True, text=True, timeout=h.scaled(10))
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("user: daemon: dnsveil runs as uid 65534, not root, and cannot become "
                      "uid 1", r.stderr)
        log("ok: started as nobody with user: daemon -> refused: %s" % r.stderr.strip()[-120:])


if __name__ == "__main__":
    h.main()
