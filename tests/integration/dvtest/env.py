"""Settings, temporary ports, processes and polling: what every other
module of the package stands on.

Environment (set by tests/CMakeLists.txt):
  DNSVEIL        path of the binary under test (tests fail clearly without it)
  DV_SANITIZE    1 when the binary is an ASan+UBSan build: timeouts and loads
                 are scaled, and any sanitizer report in its stderr fails
  DV_SOURCE_DIR  repository root
  DV_KEEP_TMP=1  keep every temporary directory (they are kept anyway, and
                 their paths printed, when a test fails)
  DV_RESOLVER    the resolver behind dnsveil that start_resolver() starts:
                 "unbound" (the default) or "kresd" (Knot Resolver)
"""

import atexit
import fcntl
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time

# ---------------------------------------------------------------- settings

SANITIZE = os.environ.get("DV_SANITIZE", "0").strip().lower() in (
    "1", "on", "true", "yes")
#: multiply every timeout by this; divide every load by it
SCALE = 3.0 if SANITIZE else 1.0
SOURCE_DIR = os.environ.get("DV_SOURCE_DIR") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
KEEP_TMP = os.environ.get("DV_KEEP_TMP", "") not in ("", "0")
RESOLVER = os.environ.get("DV_RESOLVER", "").strip().lower() or "unbound"
if RESOLVER not in ("unbound", "kresd"):
    raise SystemExit("DV_RESOLVER=%r: unbound or kresd" % RESOLVER)

UNBOUND = shutil.which("unbound", path="/usr/sbin:/usr/bin:/sbin:/bin") or "unbound"
UNBOUND_CONTROL = shutil.which(
    "unbound-control", path="/usr/sbin:/usr/bin:/sbin:/bin") or "unbound-control"
KDIG = shutil.which("kdig", path="/usr/bin:/bin") or "kdig"
DNSPERF = shutil.which("dnsperf", path="/usr/bin:/bin") or "dnsperf"

ZONE = "example.test."
SLOW_ZONE = "slow.example.test."
NUM_HOSTS = 1000            # h0 .. h999.example.test
BIG_TXT_STRINGS = 12        # 12 x 250 bytes = ~3000 bytes of TXT rdata
BIG_TXT_STRLEN = 250

SANITIZER_PATTERNS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "WARNING: ThreadSanitizer",
)


def log(*args):
    print(*args, flush=True)


def scaled(seconds):
    return seconds * SCALE


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Poll `predicate` until it returns a truthy value or `timeout` passes.
    Returns the value; raises AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - reported below
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s%s" % (
                timeout, what, " (last error: %r)" % last_exc if last_exc else ""))
        time.sleep(interval)


def have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- ports
#
# A port is chosen by binding port 0 (TCP), then checking that the same port
# is also free for UDP (and on ::1 if asked).  Tests run in parallel as
# separate processes, so each chosen port is also reserved with an flock()ed
# file in a shared directory for the life of this process: another test
# process skips any port it cannot lock, even after we closed our probe
# sockets and before the real server bound it.

_PORT_LOCK_DIR = os.path.join(tempfile.gettempdir(), "dnsveil-test-ports")
_port_locks = {}


def _try_bind(family, kind, host, port):
    s = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return s
    except OSError:
        s.close()
        return None


@atexit.register
def _release_ports():
    # unlink while still holding the lock, so no other process can lock
    # the same file and believe it owns the port
    for fd, path in _port_locks.values():
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)
    _port_locks.clear()


def free_port(ipv6=False):
    """A port free for TCP and UDP on 127.0.0.1 (and ::1 when ipv6=True),
    reserved against other test processes for the life of this process."""
    os.makedirs(_PORT_LOCK_DIR, exist_ok=True)
    for _ in range(500):
        t = _try_bind(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1", 0)
        if t is None:
            continue
        port = t.getsockname()[1]
        probes = [t]
        try:
            if port in _port_locks:
                continue
            ok = True
            for fam, kind, host in ((socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1"),) + (
                    ((socket.AF_INET6, socket.SOCK_STREAM, "::1"),
                     (socket.AF_INET6, socket.SOCK_DGRAM, "::1")) if ipv6 else ()):
                s = _try_bind(fam, kind, host, port)
                if s is None:
                    ok = False
                    break
                probes.append(s)
            if not ok:
                continue
            path = os.path.join(_PORT_LOCK_DIR, "%d.lock" % port)
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # the holder may have unlinked it between our open and lock
                if os.fstat(fd).st_ino != os.stat(path).st_ino:
                    raise OSError("stale lock file")
            except OSError:
                os.close(fd)
                continue
            _port_locks[port] = (fd, path)
            return port
        finally:
            for s in probes:
                s.close()
    raise RuntimeError("could not find a free port")



# ---------------------------------------------------------------- processes

def pid_alive(proc):
    return proc is not None and proc.poll() is None


def terminate(proc, sig=signal.SIGTERM, timeout=5.0):
    """Signal a process we started (by its PID) and reap it; SIGKILL after
    `timeout`.  Returns the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=10)
    return proc.returncode


def tail(path, n=40):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)



def read_text(path):
    with open(path) as f:
        return f.read()


def raise_nofile(want=65536):
    """Raise RLIMIT_NOFILE of this process (inherited by every child we
    start, dnsveil included) as far as the hard limit allows.  Returns the
    new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in ((want, want), (max(soft, min(want, hard)), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, target)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def stat_delta(before, after, keys=None):
    """after - before for `keys` (default: every integer counter of
    `after`); a key missing from `before` counts as 0, one missing from
    `after` is an error (a counter the test names must exist)."""
    keys = keys or [k for k in after if isinstance(after[k], int)]
    return {k: after[k] - before.get(k, 0) for k in keys}


def percentile(xs, p):
    """The p-th percentile of `xs` (nearest rank), NaN when empty."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]
