#!/usr/bin/python3
"""Side-by-side benchmark of dnsveil, dnsdist and Unbound as frontends.

Started by tests/bench/run.sh (which builds the release binary first); see
tests/bench/README.md.  Debian's /usr/bin/python3, standard library only.

  bench.py run --dnsveil BIN [--quick] [--runs N] [--seconds S] ...
  bench.py dot-idle --port P --count N --ca FILE [--alpn h2]   (helper, used by `run`)

Everything runs on 127.0.0.1.  Every process started here is remembered by
PID and stopped (SIGTERM, then SIGKILL) on exit, on error and on
SIGINT/SIGTERM/SIGHUP.  Every wait is bounded.  Nothing is pass/fail: the
exit status is 0 unless a component fails to start.

Adding a row (a transport): append a Transport to TRANSPORTS with the
dnsveil listener URL it needs and a runner (an object whose run() loads one
server's port for some seconds and returns a Result, see DnsperfRunner);
give each server that supports it a port under the Transport's `port` key
(and a listener line in its config template).  A server without that port,
a transport without a runner, and a scheme dnsveil refuses
(`--check-config`) all print "n/a".
"""

import argparse
import datetime
import json
import os
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CERT = os.path.join(ROOT, "certs", "dev-cert.pem")
KEY = os.path.join(ROOT, "certs", "dev-key.pem")
CA = os.path.join(ROOT, "certs", "ca.pem")

SERVER_CPU = 0          # every server under test
LOAD_CPU = 1            # dnsperf, this script, the idle-connection helper, the upstream
# RLIMIT_NOFILE for servers and helper: 65536, or the hard limit when lower
# (a container may not let even root raise it)
NOFILE = min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
ZONE_HOSTS = 10000      # h0..h9999.bench.test
HIT_NAMES = 1000        # the cache-hit query file
CLK_TCK = os.sysconf("SC_CLK_TCK")

UNBOUND = shutil.which("unbound", path="/usr/sbin:/usr/bin") or "/usr/sbin/unbound"
DNSDIST = shutil.which("dnsdist", path="/usr/bin:/usr/sbin") or "/usr/bin/dnsdist"
KRESD = shutil.which("kresd", path="/usr/sbin:/usr/bin") or "/usr/sbin/kresd"
DNSPERF = shutil.which("dnsperf", path="/usr/bin") or "/usr/bin/dnsperf"
H2LOAD = shutil.which("h2load", path="/usr/bin") or "/usr/bin/h2load"
CURL = shutil.which("curl", path="/usr/bin") or "/usr/bin/curl"


def log(*a):
    """Progress goes to stderr; stdout carries only the Markdown report."""
    print(*a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ processes

STARTED = []            # every Popen we made, for cleanup
TMP_DIRS = []           # removed at exit unless --keep or a failure


def _stop(proc, grace=5.0):
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=5)


def cleanup():
    while STARTED:
        p = STARTED.pop()
        try:
            _stop(p, grace=3.0)
        except Exception as e:  # noqa: BLE001 - best effort at exit
            log("cleanup: pid %d: %r" % (p.pid, e))


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def spawn(cmd, cpu, logfile, nofile=NOFILE, cwd=None, stdin=subprocess.DEVNULL,
          stdout=None):
    """Start cmd pinned to `cpu` (like taskset -c) with RLIMIT_NOFILE raised
    (like prlimit --nofile); its PID is remembered for cleanup."""
    def pre():
        os.sched_setaffinity(0, {cpu})
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        os.setpgid(0, 0)        # a terminal's Ctrl-C goes to us only; we stop it by PID
    out = open(logfile, "ab")
    try:
        p = subprocess.Popen(cmd, stdin=stdin, stdout=stdout or out, stderr=out,
                             cwd=cwd, preexec_fn=pre)
    finally:
        out.close()
    STARTED.append(p)
    return p


def proc_cpu_seconds(pid):
    """utime + stime of the whole process (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_busy_seconds(cpu):
    """user+nice+system time of one CPU so far (/proc/stat; interrupt and
    softirq time not included), in seconds."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu%d " % cpu):
                v = line.split()
                return (int(v[1]) + int(v[2]) + int(v[3])) / CLK_TCK
    return 0.0


def own_and_children_cpu_seconds():
    """utime+stime of this script and of its children that have exited
    (the load generator of the run just finished)."""
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


class CpuWatch:
    """CPU accounting of one run: started just before the load generator,
    finish() right after it exits.  Sets on the Result: cpu (the server),
    up_cpu (the upstream, if given), others (CPU 0 time of processes other
    than the server) and others_load (CPU 1 time of processes other than the
    load generator, this script and the upstream), as fractions of one CPU
    over the wall time."""

    def __init__(self, pid, upstream_pid=None):
        self.pid = pid
        self.upstream_pid = upstream_pid
        self.server = proc_cpu_seconds(pid)
        self.upstream = proc_cpu_seconds(upstream_pid) if upstream_pid else None
        self.busy = cpu_busy_seconds(SERVER_CPU), cpu_busy_seconds(LOAD_CPU)
        self.mine = own_and_children_cpu_seconds()
        self.t0 = time.monotonic()

    def finish(self, res, span=None):
        """span: the load generator's own measuring time, when its start-up
        and wind-down are long enough to matter (dnsveil-doq: ~0.1 s): the
        server's and upstream's CPU are then divided by it, not by the wall
        time, so that answers/s ÷ server CPU stays answers per CPU-second."""
        wall = time.monotonic() - self.t0
        span = span if span and span < wall else wall
        res.cpu = (proc_cpu_seconds(self.pid) - self.server) / span
        up = 0.0
        if self.upstream_pid:
            res.up_cpu = (proc_cpu_seconds(self.upstream_pid) - self.upstream) / span
            up = res.up_cpu * span / wall
        busy0 = (cpu_busy_seconds(SERVER_CPU) - self.busy[0]) / wall
        busy1 = (cpu_busy_seconds(LOAD_CPU) - self.busy[1]) / wall
        mine = (own_and_children_cpu_seconds() - self.mine) / wall
        res.others = max(0.0, busy0 - res.cpu - (up if self.upstream_pid and
                                                  SERVER_CPU in os.sched_getaffinity(
                                                      self.upstream_pid) else 0.0))
        res.others_load = max(0.0, busy1 - mine - (up if self.upstream_pid and
                                                   LOAD_CPU in os.sched_getaffinity(
                                                       self.upstream_pid) else 0.0))
        return res


def proc_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def udp_drops():
    """The host's UDP receive-buffer drops so far (all sockets, all
    processes: other work on the machine counts too)."""
    with open("/proc/net/snmp") as f:
        rows = [ln.split() for ln in f if ln.startswith("Udp:")]
    return int(dict(zip(rows[0][1:], rows[1][1:])).get("RcvbufErrors", 0))


def udp_port_drops(port):
    """Datagrams dropped by the UDP sockets bound to 127.0.0.1:port (full
    receive buffer), from /proc/net/udp."""
    want = "0100007F:%04X" % port
    total = 0
    with open("/proc/net/udp") as f:
        next(f)
        for ln in f:
            parts = ln.split()
            if len(parts) >= 13 and parts[1] == want:
                total += int(parts[12])
    return total


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# ------------------------------------------------------------------ ports

_used_ports = set()


def free_port():
    """A port free for both TCP and UDP on 127.0.0.1, below the kernel's
    ephemeral range (so that dnsperf's and the helper's own connections
    never take it)."""
    rng = random.Random()
    for _ in range(2000):
        port = rng.randrange(20000, 32000)
        if port in _used_ports:
            continue
        ok = True
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                ok = False
            finally:
                s.close()
            if not ok:
                break
        if ok:
            _used_ports.add(port)
            return port
    raise RuntimeError("no free port found")


# ------------------------------------------------------------------ DNS bits

def dns_query(name, qid=0x1234):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", 1, 1)


def udp_rcode(port, name, timeout=0.3):
    """rcode of a UDP answer, or None."""
    qid = random.randrange(65536)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(dns_query(name, qid), ("127.0.0.1", port))
        data = s.recv(4096)
        if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
            return data[3] & 0x0F
    except OSError:
        return None
    finally:
        s.close()
    return None


def tcp_open(port, timeout=0.3):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def tls_ok(port, timeout=1.0):
    """A verified DoT handshake (a bare TCP probe would show up in the
    servers' logs and counters as a failed handshake)."""
    ctx = ssl.create_default_context(cafile=CA)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            with ctx.wrap_socket(s, server_hostname="dns.test"):
                return True
    except (OSError, ssl.SSLError):
        return False


H2_PROBE = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" +       # client preface
            b"\0\0\0\x04\0\0\0\0\0" +                    # empty SETTINGS
            b"\0\0\x08\x07\0\0\0\0\0" + b"\0" * 8)       # GOAWAY, NO_ERROR


def https_ok(port, timeout=1.0):
    """A verified TLS handshake on a DoH port that settles on ALPN h2 (the
    protocol the DoH rows use), then a clean HTTP/2 goodbye (preface,
    SETTINGS, GOAWAY): a connection closed right after the handshake would
    count as a client error in the servers' statistics."""
    ctx = ssl.create_default_context(cafile=CA)
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            with ctx.wrap_socket(s, server_hostname="dns.test") as t:
                if t.selected_alpn_protocol() != "h2":
                    return False
                t.sendall(H2_PROBE)
                t.settimeout(0.3)
                try:
                    while t.recv(4096):     # the server's SETTINGS, ack, GOAWAY
                        pass
                except (OSError, ssl.SSLError):
                    pass
                return True
    except (OSError, ssl.SSLError):
        return False


def wait_until(pred, timeout, proc=None, what="", interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with status %s" % (what, proc.returncode))
        if pred():
            return True
        time.sleep(interval)
    raise RuntimeError("%s not ready after %.0f s" % (what, timeout))


# ------------------------------------------------------------------ files

def render(template, dest, **values):
    with open(os.path.join(HERE, template)) as f:
        text = f.read()

    def sub(m):
        k = m.group(1)
        if k not in values:
            raise KeyError("%s: no value for @%s@" % (template, k))
        return str(values[k])
    text = re.sub(r"@([A-Z_]+)@", sub, text)
    with open(dest, "w") as f:
        f.write(text)
    return dest


def write_zone(path):
    with open(path, "w") as f:
        f.write("$ORIGIN bench.test.\n$TTL 86400\n"
                "@ SOA ns hostmaster 1 3600 600 86400 3600\n@ NS ns\nns A 127.0.0.1\n"
                "* A 10.255.255.255\n")
        for i in range(ZONE_HOSTS):
            f.write("h%d A 10.%d.%d.%d\n" % (i, i >> 16, (i >> 8) & 255, i & 255))


def write_hit_queries(path):
    names = random.Random(53).sample(range(ZONE_HOSTS), HIT_NAMES)
    with open(path, "w") as f:
        for i in names:
            f.write("h%d.bench.test A\n" % i)


def write_policy_list(path, count):
    """A block list in domains format: `count` names b{i}.blocked.test, a
    comment and two bad lines (counted, skipped)."""
    with open(path, "w") as f:
        f.write("# bench block list\n")
        for i in range(count):
            f.write("b%d.blocked.test\n" % i)
        f.write("bad..line\nalso bad\n")


def policy_note(notes, dv, base, count):
    """What loading the list cost: dnsveil's own line (names, bytes, ms)
    and the RSS of the instance with the list beside the one without."""
    line = ""
    for ln in open(dv.log, errors="replace"):
        if "policy:" in ln and "loaded in" in ln:
            line = ln.split("info: ", 1)[-1].strip()
    with_kib = proc_rss_kib(dv.pid) if dv.alive() else 0
    without_kib = proc_rss_kib(base.pid) if base is not None and base.alive() else 0
    notes.append("policy: a %d-name block list (--policy-list): %s; RSS %.1f MiB with it, "
                 "%.1f MiB without (the baseline rows: the same binary, no policy)" % (
                     count, line or "no load line in the log",
                     with_kib / 1024.0, without_kib / 1024.0))


def write_miss_queries(path, count):
    """`count` names new to every cache: m<random>.bench.test, answered by
    the upstream's wildcard."""
    rng = random.Random()
    tag = "%06x" % rng.getrandbits(24)
    with open(path, "w") as f:
        f.writelines("m%s%x.bench.test A\n" % (tag, rng.getrandbits(40)) for _ in range(count))


# ------------------------------------------------------------------ load

class Result:
    def __init__(self, **kw):
        self.qps = kw.get("qps")            # answers per second
        self.mean_ms = kw.get("mean_ms")
        self.p50_ms = kw.get("p50_ms")
        self.p99_ms = kw.get("p99_ms")
        self.lost = kw.get("lost")
        self.errors = kw.get("errors")      # answers other than NOERROR
        self.errors_are = kw.get("errors_are", "not NOERROR")   # ... or other than HTTP 2xx
        self.cpu = kw.get("cpu")            # fraction of one CPU the server used
        self.up_cpu = kw.get("up_cpu")      # ... and the upstream Unbound
        self.udp_drops = kw.get("udp_drops")  # host-wide UDP receive-buffer drops
        self.server_drops = kw.get("server_drops")  # ... by the server's own socket(s)
        self.exhausted = kw.get("exhausted", False)
        self.note = kw.get("note", "")
        self.others = None      # CPU 0 used by other processes than the server
        self.others_load = None  # CPU 1 used by others than the load generator, upstream, us

    @property
    def per_cpu(self):
        if self.qps is None or not self.cpu:
            return None
        return self.qps / self.cpu


class DnsperfRunner:
    """dnsperf in mode udp|tcp|dot, pinned to the load CPU, with -v so that
    every answer's latency can be read (dnsperf prints no percentiles)."""

    def __init__(self, mode, clients, inflight, timeout=2):
        self.mode = mode
        self.clients = clients
        self.inflight = inflight
        self.timeout = timeout

    def describe(self):
        return "dnsperf -m %s -c %d -q %d -T 1 -t %d" % (
            self.mode, self.clients, self.inflight, self.timeout)

    def cmd(self, port, queries, seconds=None, once=False, verbose=True):
        c = ["taskset", "-c", str(LOAD_CPU), DNSPERF, "-m", self.mode, "-s", "127.0.0.1",
             "-p", str(port), "-d", queries, "-c", str(self.clients), "-q", str(self.inflight),
             "-T", "1", "-t", str(self.timeout)]
        if verbose:
            c.append("-v")
        if seconds:
            c += ["-l", str(seconds)]
        if once:
            c += ["-n", "1"]
        return c

    def warm(self, port, queries, tmp):
        out = os.path.join(tmp, "warm.out")
        with open(out, "w") as f:
            subprocess.run(self.cmd(port, queries, seconds=30, once=True, verbose=False), stdout=f,
                           stderr=subprocess.STDOUT, timeout=60, check=False)

    def run(self, port, queries, seconds, pid, tmp, once=False, upstream_pid=None):
        out = os.path.join(tmp, "dnsperf.out")
        drops0 = udp_drops()
        sdrops0 = udp_port_drops(port) if self.mode == "udp" else 0
        watch = CpuWatch(pid, upstream_pid)
        with open(out, "w") as f:
            r = subprocess.run(self.cmd(port, queries, seconds=seconds, once=once),
                               stdout=f, stderr=subprocess.STDOUT,
                               timeout=seconds + self.timeout + 30, check=False)
        res = watch.finish(parse_dnsperf(out))
        res.udp_drops = udp_drops() - drops0
        if self.mode == "udp":
            res.server_drops = udp_port_drops(port) - sdrops0
        if r.returncode != 0 or res.qps is None:
            res.note = "dnsperf exit %d: %s" % (r.returncode, tail(out, 3).strip()[-200:])
        os.unlink(out)
        return res


def parse_dnsperf(path):
    lat = []
    errors = 0
    lost_mid = 0
    pending_t = 0
    qps = mean = None
    end_of_file = False
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("> "):
                parts = line.split()
                code = parts[1]
                if code == "T" or code == "I":
                    pending_t += 1
                    continue
                lost_mid += pending_t
                pending_t = 0
                if code != "NOERROR":
                    errors += 1
                try:
                    lat.append(float(parts[-1]))
                except ValueError:
                    pass
            elif line.startswith("  Queries per second:"):
                qps = float(line.split()[-1])
            elif "Testing complete (end of file)" in line:
                end_of_file = True
    # Time-outs at the very end are mostly the queries still in flight when
    # the time limit stopped dnsperf, which reports them as lost: not counted,
    # unless the run ended at the end of the file (then dnsperf waited for
    # them).
    lost = lost_mid + (pending_t if end_of_file else 0)
    # (dnsperf's own "Average Latency" is the same; with -m tcp/dot a second
    # one follows, for connections)
    mean = 1000 * sum(lat) / len(lat) if lat else None
    lat.sort()

    def pct(p):
        if not lat:
            return None
        return lat[min(len(lat) - 1, int(p / 100.0 * len(lat)))] * 1000
    return Result(qps=qps, mean_ms=mean, p50_ms=pct(50), p99_ms=pct(99), lost=lost,
                  errors=errors, exhausted=end_of_file)


class H2loadRunner:
    """h2load POSTing one DNS query (wire format, id 0, RFC 8484) over HTTP/2
    and TLS to https://127.0.0.1:PORT/dns-query: `clients` connections x
    `streams` streams each, one thread pinned to the load CPU, for -D seconds.
    Every request carries the same body, so the workload is purely cache hits
    (no miss-heavy row).  h2load prints no percentiles: --log-file gives every
    request's status and latency, and they are computed from it."""

    workloads = ("hit",)
    why_not = {"miss": "h2load POSTs the same body every time: cache-hit only"}

    def __init__(self, clients, streams, path="/dns-query"):
        self.clients = clients
        self.streams = streams
        self.path = path
        self.checked = {}       # port -> note from the curl check in warm()

    def describe(self):
        return "h2load -c %d -m %d -t 1 (HTTP/2 over TLS, POST of one query)" % (
            self.clients, self.streams)

    def url(self, port):
        return "https://127.0.0.1:%d%s" % (port, self.path)

    @staticmethod
    def body(queries, tmp):
        """The first name of the query file as a DoH POST body (id 0)."""
        with open(queries) as f:
            name = f.readline().split()[0]
        path = os.path.join(tmp, "doh-body.bin")
        with open(path, "wb") as f:
            f.write(dns_query(name, qid=0))
        return path

    def cmd(self, port, body, seconds=None, requests=None, logfile=None):
        c = ["taskset", "-c", str(LOAD_CPU), H2LOAD, "-t", "1", "-c", str(self.clients),
             "-m", str(self.streams), "-d", body, "-H", "content-type: application/dns-message"]
        if seconds:
            c += ["-D", str(seconds)]
        if requests:
            c += ["-n", str(requests)]
        if logfile:
            c += ["--log-file", logfile]
        return c + [self.url(port)]

    def check(self, port, body, tmp):
        """One POST with curl over HTTP/2 (certificate verified): "" if the
        answer is a NOERROR DNS message, else what went wrong."""
        if not os.access(CURL, os.X_OK):
            return "answer not checked (no curl)"
        ans = os.path.join(tmp, "doh-answer.bin")
        try:
            r = subprocess.run([CURL, "-sS", "--http2", "--cacert", CA, "--max-time", "5",
                                "-H", "content-type: application/dns-message",
                                "--data-binary", "@" + body, "-o", ans,
                                "-w", "%{http_code} %{http_version}", self.url(port)],
                               capture_output=True, text=True, timeout=15, check=False)
        except (OSError, subprocess.SubprocessError) as e:
            return "curl: %s" % e
        code = r.stdout.strip()
        try:
            with open(ans, "rb") as f:
                data = f.read()
            os.unlink(ans)
        except OSError:
            data = b""
        if code != "200 2":
            return "curl check: HTTP %s %s" % (code, r.stderr.strip()[-100:])
        if len(data) < 12 or data[3] & 0x0F != 0:
            return "curl check: answer is not a NOERROR DNS message"
        return ""

    def warm(self, port, queries, tmp):
        body = self.body(queries, tmp)
        self.checked[port] = self.check(port, body, tmp)
        with open(os.path.join(tmp, "warm.out"), "w") as f:
            subprocess.run(self.cmd(port, body, requests=5000), stdout=f,
                           stderr=subprocess.STDOUT, timeout=60, check=False)

    def run(self, port, queries, seconds, pid, tmp, once=False, upstream_pid=None):
        body = self.body(queries, tmp)
        out = os.path.join(tmp, "h2load.out")
        reqlog = os.path.join(tmp, "h2load.log")
        if os.path.exists(reqlog):
            os.unlink(reqlog)       # h2load appends to its --log-file
        watch = CpuWatch(pid, upstream_pid)
        with open(out, "w") as f:
            r = subprocess.run(self.cmd(port, body, seconds=seconds, logfile=reqlog),
                               stdout=f, stderr=subprocess.STDOUT, timeout=seconds + 60,
                               check=False)
        res = watch.finish(parse_h2load(out, reqlog))
        notes = [self.checked.get(port, "")]
        if r.returncode != 0 or res.qps is None:
            notes.append("h2load exit %d: %s" % (r.returncode, tail(out, 3).strip()[-200:]))
        res.note = "; ".join(n for n in notes if n)
        for f in (out, reqlog):
            if os.path.exists(f):
                os.unlink(f)
        return res


def parse_h2load(out, reqlog):
    """Answers/s = 2xx responses over h2load's measuring time; latencies
    (request sent to end of response) of the 2xx responses from the
    per-request log; lost = streams that failed (status -1 in the log: reset,
    connection error, time-out); errors = responses other than 2xx."""
    secs = None
    with open(out, errors="replace") as f:
        text = f.read()
    m = re.search(r"finished in ([\d.]+)(m?s),", text)
    if m:
        secs = float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
    lat = []
    lost = errors = 0
    try:
        with open(reqlog) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) < 3:
                    continue
                status = int(parts[1])
                if status == -1:
                    lost += 1
                elif 200 <= status < 300:
                    lat.append(int(parts[2]) / 1000.0)
                else:
                    errors += 1
    except (OSError, ValueError):
        pass
    if not secs or not lat:
        return Result(lost=lost, errors=errors, errors_are="not 2xx")
    mean = sum(lat) / len(lat)
    n = len(lat)
    lat.sort()

    def pct(p):
        return lat[min(n - 1, int(p / 100.0 * n))]
    return Result(qps=n / secs, mean_ms=mean, p50_ms=pct(50), p99_ms=pct(99), lost=lost,
                  errors=errors, errors_are="not 2xx")


class DoqRunner:
    """The project's DoQ client, build-bench/dnsveil-doq, pinned to the load
    CPU: `connections` QUIC connections x `streams` queries (streams) in
    flight on each, for -d seconds, certificate verified (--name dns.test
    --ca certs/ca.pem).  It takes at most 64 NAME TYPE pairs and repeats
    them: the first 64 names of the cache-hit file for the cache-hit row;
    for the miss-heavy row it adds --unique, which asks u<seed>-<n>.NAME,
    a name never asked before, with every query.  Its JSON summary (-j -q) gives
    queries, answers, qps (answers over first query sent .. last answer)
    and p50/p99 latencies measured from each stream's opening (a query
    waiting for stream credit is not timed until its stream opens); it
    prints no mean."""

    workloads = ("hit", "miss")
    MAX_NAMES = 64

    def __init__(self, binary, connections, streams, timeout=2):
        self.binary = binary
        self.connections = connections
        self.streams = streams
        self.timeout = timeout
        self.checked = {}       # port -> note from the check in warm()

    def describe(self):
        return "dnsveil-doq -K %d -C %d -t %d (cache-hit: 64 names of the cache-hit file; " \
               "miss-heavy: --unique, a new name per query; certificate verified)" % (
                   self.connections, self.streams, self.timeout)

    def questions(self, queries):
        out = []
        with open(queries) as f:
            for line in f:
                parts = line.split()
                if parts:
                    out += parts[:2]
                if len(out) >= 2 * self.MAX_NAMES:
                    break
        return out

    def cmd(self, port, queries, seconds=None, count=None, connections=None,
            streams=None, quiet=True):
        c = ["taskset", "-c", str(LOAD_CPU), self.binary, "--name", "dns.test", "--ca", CA,
             "-j", "-t", str(self.timeout),
             "-K", str(connections or self.connections), "-C", str(streams or self.streams)]
        if quiet:
            c.append("-q")
        if seconds:
            c += ["-d", str(seconds)]
        if count:
            c += ["-c", str(count)]
        if os.path.basename(queries).startswith("miss"):
            c.append("--unique")  # every query a new name
        return c + ["127.0.0.1:%d" % port] + self.questions(queries)

    @staticmethod
    def parse(path):
        """(summary dict or None, answers' rcodes counted, other lines)"""
        summary, rcodes, other = None, {}, []
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    obj = json.loads(line)
                except ValueError:
                    if line.strip():
                        other.append(line.strip())
                    continue
                if obj.get("type") == "summary":
                    summary = obj
                elif obj.get("type") == "answer":
                    rc = obj.get("rcode", "?")
                    rcodes[rc] = rcodes.get(rc, 0) + 1
        return summary, rcodes, other

    def warm(self, port, queries, tmp):
        """One verified pass over the names on one connection, every answer's
        rcode checked (the runs use -q: no per-answer output), then a few
        thousand queries through the same client settings as the runs."""
        out = os.path.join(tmp, "doq-check.out")
        note = ""
        with open(out, "w") as f:
            r = subprocess.run(self.cmd(port, queries, count=1, connections=1, quiet=False),
                               stdout=f, stderr=subprocess.STDOUT, timeout=60, check=False)
        summary, rcodes, other = self.parse(out)
        if r.returncode != 0 or summary is None:
            note = "DoQ check: exit %d %s" % (r.returncode, " ".join(other)[-150:])
        elif set(rcodes) != {"NOERROR"}:
            note = "DoQ check: rcodes %s" % ", ".join(
                "%s %d" % kv for kv in sorted(rcodes.items()))
        self.checked[port] = note
        with open(out, "w") as f:
            subprocess.run(self.cmd(port, queries, count=50), stdout=f,
                           stderr=subprocess.STDOUT, timeout=60, check=False)
        os.unlink(out)

    def run(self, port, queries, seconds, pid, tmp, once=False, upstream_pid=None):
        out = os.path.join(tmp, "doq.out")
        watch = CpuWatch(pid, upstream_pid)
        with open(out, "w") as f:
            r = subprocess.run(self.cmd(port, queries, seconds=seconds), stdout=f,
                               stderr=subprocess.STDOUT, timeout=seconds + 3 * self.timeout + 30,
                               check=False)
        summary, _rcodes, other = self.parse(out)
        notes = [self.checked.get(port, "")]
        if summary is None or not summary.get("answers"):
            res = Result()
            notes.append("dnsveil-doq exit %d: %s" % (r.returncode, " ".join(other)[-200:]))
        else:
            lat = summary.get("latency_ms", {})
            res = Result(qps=summary.get("qps"), p50_ms=lat.get("p50"), p99_ms=lat.get("p99"),
                         lost=summary["queries"] - summary["answers"], errors=0)
            errs = summary.get("errors") or {}
            if errs:
                notes.append("client errors: %s" % ", ".join(
                    "%s %d" % kv for kv in sorted(errs.items())))
        # the client's qps is over first query .. last answer: the server's
        # CPU over the same span (not the ~0.1 s of start-up and close)
        span = summary["answers"] / summary["qps"] if res.qps else None
        watch.finish(res, span=span)
        res.note = "; ".join(n for n in notes if n)
        os.unlink(out)
        return res


class Transport:
    def __init__(self, key, label, scheme, listen, port, runner):
        self.key = key          # short name
        self.label = label      # row label
        self.scheme = scheme    # dnsveil listener scheme (checked with --check-config)
        self.listen = listen    # dnsveil listener URL, {port} filled in
        self.port = port        # which of a server's ports it uses
        self.runner = runner    # None: no load generator yet (prints n/a)


CLIENTS, INFLIGHT = 10, 1000    # 10 connections x 100 in flight (TARGETS.md)
DOH_CLIENTS, DOH_STREAMS = 10, 10   # 10 connections x 10 streams (TARGETS.md)
DOQ_CONNECTIONS, DOQ_STREAMS = 10, 100     # like DoT: 10 connections x 100 in flight
NO_RUNNER = {"doh": "h2load is not installed (apt-get install nghttp2-client)",
             "doq": "no dnsveil-doq client (build-bench/dnsveil-doq did not build)"}

TRANSPORTS = [
    Transport("udp", "Do53 UDP", "udp", "udp://127.0.0.1:{port}", "dns",
              DnsperfRunner("udp", CLIENTS, INFLIGHT)),
    Transport("tcp", "Do53 TCP", "tcp", "tcp://127.0.0.1:{port}", "dns",
              DnsperfRunner("tcp", CLIENTS, INFLIGHT)),
    Transport("dot", "DoT", "tls", "tls://127.0.0.1:{port}", "dot",
              DnsperfRunner("dot", CLIENTS, INFLIGHT)),
    Transport("doh", "DoH h2 POST", "https", "https://127.0.0.1:{port}/dns-query", "doh",
              H2loadRunner(DOH_CLIENTS, DOH_STREAMS) if os.access(H2LOAD, os.X_OK) else None),
    # the runner is set in run_main() when the dnsveil-doq client is there
    # (--doq-client); no packaged DoQ peer on Debian 12 (see the peers' `na`)
    Transport("doq", "DoQ", "quic", "quic://127.0.0.1:{port}", "doq", None),
]


# ------------------------------------------------------------------ servers

class Server:
    name = "?"
    required = False

    def __init__(self, tmp):
        self.tmp = tmp
        self.proc = None
        self.ports = {}
        self.log = None
        self.failed = None      # why it could not start (the throughput runs)
        self.na = {}            # transport key -> why this server has no such row

    @property
    def pid(self):
        return self.proc.pid

    def ready(self):
        """The upstream path answers over UDP (unless this instance has no
        Do53 listener), a DoT handshake succeeds and a DoH one settles on
        h2 (the DoH listener is not checked in the memory test)."""
        memory_mode = getattr(self, "memory_mode", False)
        if "dns" in self.ports and not memory_mode and \
                udp_rcode(self.ports["dns"], "h0.bench.test") != 0:
            return False
        if "doh" in self.ports and not memory_mode and not https_ok(self.ports["doh"]):
            return False
        return "dot" not in self.ports or tls_ok(self.ports["dot"])

    def start(self, cpu=SERVER_CPU, memory_test=False):
        self.memory_mode = memory_test
        self.proc = spawn(self.command(memory_test), cpu, self.log, cwd=self.tmp)
        try:
            wait_until(self.ready, 20, self.proc, self.name)
        except RuntimeError as e:
            why = "%s (log %s: %s)" % (e, self.log, tail(self.log, 5).strip())
            self.stop()
            raise RuntimeError(why)

    def stop(self):
        if self.proc is None:
            return None
        rc = _stop(self.proc)
        if self.proc in STARTED:
            STARTED.remove(self.proc)
        self.proc = None
        return rc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Upstream(Server):
    name = "upstream Unbound"
    required = True

    def __init__(self, tmp):
        super().__init__(tmp)
        self.dir = os.path.join(tmp, "upstream")
        os.makedirs(self.dir)
        self.ports = {"dns": free_port()}
        self.log = os.path.join(self.dir, "stderr.log")
        zone = os.path.join(self.dir, "bench.test.zone")
        write_zone(zone)
        self.conf = render("unbound-upstream.conf", os.path.join(self.dir, "unbound.conf"),
                           DIR=self.dir, PORT=self.ports["dns"], ZONEFILE=zone)

    def command(self, memory_test):
        return [UNBOUND, "-d", "-c", self.conf]


KRESD_CONF = """-- the upstream of tests/bench with --upstream kresd: Knot Resolver as the
-- resolver the servers under test forward to, stubbing bench.test to the
-- authority Unbound; nothing else is resolved, nothing leaves the machine
log_target('stderr')
log_level('warning')
for _, m in ipairs({'priming', 'ta_update', 'ta_signal_query', 'ta_sentinel',
                    'detect_time_skew', 'detect_time_jump'}) do
  modules.unload(m)
end
trust_anchors.remove('.')
net.ipv6 = false
net.listen('127.0.0.1', %(port)d, {kind = 'dns'})
net.tcp_pipeline(4096)
cache.open(256 * MB, 'lmdb://%(dir)s/cache')
policy.add(policy.suffix(policy.STUB('127.0.0.1@%(auth)d'), {todname('bench.test.')}))
policy.add(policy.all(policy.REFUSE))
"""


class KresdUpstream(Server):
    """--upstream kresd: one Knot Resolver process (Debian's knot-resolver,
    one process = one core, as kresd scales) between the servers under test
    and the authority Unbound, which stays on CPU 1 too."""
    name = "upstream kresd"
    required = True

    def __init__(self, tmp, auth_port):
        super().__init__(tmp)
        self.dir = os.path.join(tmp, "kresd")
        os.makedirs(self.dir)
        self.ports = {"dns": free_port()}
        self.log = os.path.join(self.dir, "stderr.log")
        self.conf = os.path.join(self.dir, "kresd.conf")
        with open(self.conf, "w") as f:
            f.write(KRESD_CONF % {"port": self.ports["dns"], "dir": self.dir,
                                  "auth": auth_port})

    def command(self, memory_test):
        return [KRESD, "-n", "-c", self.conf, self.dir]


SCRAPES = {"ok": 0, "failed": 0, "bytes": 0, "error": ""}


def start_scraper(port):
    """GET /metrics on dnsveil's admin listener every second, as a
    Prometheus would, in a daemon thread of this script (CPU LOAD_CPU)
    until the script ends; the counts go into the report."""
    import threading
    import urllib.request

    def loop():
        while True:
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                            timeout=5) as r:
                    SCRAPES["bytes"] = len(r.read())
                SCRAPES["ok"] += 1
            except Exception as e:  # noqa: BLE001 - counted
                SCRAPES["failed"] += 1
                SCRAPES["error"] = repr(e)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    threading.Thread(target=loop, daemon=True).start()
    log("scraping http://127.0.0.1:%d/metrics every second" % port)


class Dnsveil(Server):
    name = "dnsveil"
    required = True

    def __init__(self, tmp, binary, upstream_port, transports, upstream_scheme="tcp",
                 name="dnsveil", required=True, policy_list=None, admin_port=None,
                 extra_yaml=""):
        super().__init__(tmp)
        self.name = name
        self.required = required
        self.binary = binary
        self.dir = os.path.join(tmp, name.replace(" ", "-"))
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "stderr.log")
        listen = []
        for t in transports:
            if t.port not in self.ports:
                self.ports[t.port] = free_port()
            listen.append(t.listen.format(port=self.ports[t.port]))
        self.conf = render("dnsveil.yaml", os.path.join(self.dir, "dnsveil.yaml"),
                           LISTEN=json.dumps(listen), UPSTREAM_PORT=upstream_port,
                           UPSTREAM_SCHEME=upstream_scheme,
                           CERT=CERT, KEY=KEY)
        if policy_list:
            # the generated list blocked for every client (the default
            # group); info level for the line saying what loading it took
            with open(self.conf) as f:
                text = f.read().replace("log-level: warn", "log-level: info")
            text += ("lists:\n  bench: { source: %s, format: domains }\n"
                     "groups:\n  default: { block: [bench] }\n" % json.dumps(policy_list))
            with open(self.conf, "w") as f:
                f.write(text)
        if extra_yaml:
            # --dnsveil-yaml: more configuration for the dnsveil under
            # test ({DIR}: its directory in the temp dir)
            with open(self.conf, "a") as f:
                f.write(extra_yaml.replace("{DIR}", self.dir).rstrip("\n") + "\n")
        self.admin_port = admin_port
        if admin_port:
            with open(self.conf, "a") as f:
                f.write("admin:\n  listen: [\"http://127.0.0.1:%d\"]\n" % admin_port)

    def command(self, memory_test):
        return [self.binary, "-c", self.conf]


class Dnsdist(Server):
    name = "dnsdist"

    def __init__(self, tmp, upstream_port):
        super().__init__(tmp)
        self.dir = os.path.join(tmp, "dnsdist")
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "stderr.log")
        self.ports = {"dns": free_port(), "dot": free_port()}
        self.na = {"doq": "no DoQ in dnsdist 1.7"}
        if build_has([DNSDIST, "--version"], "dns-over-https(DOH)"):
            self.ports["doh"] = free_port()
        else:
            self.na["doh"] = "this dnsdist is built without DoH"
        self.conf = render("dnsdist.conf", os.path.join(self.dir, "dnsdist.conf"),
                           DNS_PORT=self.ports["dns"], DOT_PORT=self.ports["dot"],
                           DOH_PORT=self.ports.get("doh", 0),
                           DOH_OFF="" if "doh" in self.ports else "-- (no DoH in this build) ",
                           UPSTREAM_PORT=upstream_port, CERT=CERT, KEY=KEY)

    def command(self, memory_test):
        return [DNSDIST, "--supervised", "--disable-syslog", "-C", self.conf]


class UnboundFrontend(Server):
    name = "Unbound"

    @staticmethod
    def memory_slots():
        """incoming-num-tcp for the memory test: Unbound wants a descriptor
        per slot, and cuts the idle timeout of connections accepted while
        more than half the slots are busy (to 1/100, then 0.2 s)."""
        return max(200, min(25000, NOFILE - 1000))

    def memory_connections(self, wanted):
        return min(wanted, self.memory_slots() * 49 // 100)

    def __init__(self, tmp, upstream_port):
        super().__init__(tmp)
        self.dir = os.path.join(tmp, "unbound-frontend")
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "stderr.log")
        self.ports = {"dns": free_port(), "dot": free_port()}
        self.na = {"doq": "no DoQ in Unbound 1.17"}
        # Unbound serves DoH only when built with libnghttp2
        if build_has([UNBOUND, "-V"], "nghttp2"):
            self.ports["doh"] = free_port()
        else:
            self.na["doh"] = "this Unbound is built without libnghttp2 (no DoH)"
        self.upstream_port = upstream_port

    def command(self, memory_test):
        conf = render("unbound-frontend.conf",
                      os.path.join(self.dir, "unbound%s.conf" % ("-mem" if memory_test else "")),
                      DIR=self.dir, DOT_PORT=self.ports["dot"],
                      DOH_PORT=self.ports.get("doh", 0),
                      DOH_INTERFACE="interface: 127.0.0.1@%d" % self.ports["doh"]
                      if "doh" in self.ports and not memory_test else "# (no DoH listener)",
                      # the memory test listens for DoT only: Unbound wants
                      # descriptors for incoming-num-tcp slots per TCP interface
                      DNS_INTERFACE="# (memory test: DoT only)" if memory_test else
                      "interface: 127.0.0.1@%d" % self.ports["dns"],
                      DNS_PORT=self.ports["dns"],
                      UPSTREAM_PORT=self.upstream_port, CERT=CERT, KEY=KEY,
                      TCP_SLOTS=self.memory_slots() if memory_test else 200,
                      OUTGOING_RANGE=256 if memory_test else 8192)
        return [UNBOUND, "-d", "-c", conf]


def build_has(cmd, feature):
    """Whether a version/feature listing (`dnsdist --version`, `unbound -V`)
    mentions `feature`."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return feature in r.stdout + r.stderr


def dnsveil_implements(binary, transport):
    """(True, "") or (False, why) from dnsveil --check-config."""
    r = subprocess.run([binary, "--check-config", "--listen", transport.listen.format(port=1),
                        "--upstream", "udp://127.0.0.1:53", "--tls-cert", CERT, "--tls-key", KEY],
                       capture_output=True, text=True, timeout=10, check=False)
    if r.returncode == 0:
        return True, ""
    msg = (r.stderr or r.stdout).strip().splitlines()
    msg = msg[-1] if msg else "exit %d" % r.returncode
    return False, "not implemented yet" if "not implemented" in msg else msg


# ------------------------------------------------------------------ idle DoT helper

def h2_frame(ftype, flags, sid, payload=b""):
    return struct.pack("!I", len(payload))[1:] + struct.pack("!BBI", ftype, flags, sid) + payload


def h2_doh_request(q, path="/dns-query", authority="dns.test"):
    """The client preface, an empty SETTINGS and one DoH POST on stream 1
    (HPACK literal fields without indexing, no Huffman)."""
    def lit(name, value):
        name, value = name.encode(), value.encode()
        return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
    block = b"".join(lit(n, v) for n, v in (
        (":method", "POST"), (":scheme", "https"), (":authority", authority),
        (":path", path), ("accept", "application/dns-message"),
        ("content-type", "application/dns-message"), ("content-length", str(len(q)))))
    return (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0) +
            h2_frame(1, 0x4, 1, block) + h2_frame(0, 0x1, 1, q))


def h2_answered(sock, buf):
    """Consume the whole HTTP/2 frames at the front of `buf` (acknowledging
    SETTINGS): (rest, True when stream 1 has ended, or an error string)."""
    while len(buf) >= 9:
        length = int.from_bytes(buf[:3], "big")
        if len(buf) < 9 + length:
            break
        ftype, flags = buf[3], buf[4]
        sid = int.from_bytes(buf[5:9], "big") & 0x7fffffff
        buf = buf[9 + length:]
        if ftype == 4 and not flags & 1:
            sock.send(h2_frame(4, 1, 0))        # SETTINGS ACK: 9 bytes
        elif ftype == 7 or (ftype == 3 and sid == 1):
            return buf, "%s from the server" % ("GOAWAY" if ftype == 7 else "RST_STREAM")
        elif sid == 1 and ftype in (0, 1) and flags & 1:
            return buf, True
    return buf, False


def dot_idle_main(args):
    """Open `count` DoT connections (handshake verified against the CA, one
    query answered on each), report, then keep them open until stdin says
    anything or closes (bounded by --hold seconds).  --alpn h2: DoH
    connections instead, one POST answered on each."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.set_alpn_protocols([args.alpn])
    q = dns_query("h1.bench.test", 0x4242)
    query = struct.pack("!H", len(q)) + q
    if args.alpn == "h2":
        query = h2_doh_request(dns_query("h1.bench.test", 0))
    sel = selectors.DefaultSelector()
    state = {}          # fileno -> [sock, phase, buffer]
    done = []
    errors = {}
    started = 0
    deadline = time.monotonic() + args.timeout

    def fail(fd, why):
        sock = state.pop(fd)[0]
        try:
            sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()
        errors[why] = errors.get(why, 0) + 1

    def step(fd):
        sock, phase, buf = state[fd]
        if phase == "connect":
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return fail(fd, os.strerror(err))
            sel.unregister(sock)
            tls = ctx.wrap_socket(sock, server_hostname="dns.test",
                                  do_handshake_on_connect=False)
            state[fd] = [tls, "handshake", b""]
            sel.register(tls, selectors.EVENT_WRITE, fd)
            return step(fd)
        if phase == "handshake":
            try:
                sock.do_handshake()
            except ssl.SSLWantReadError:
                sel.modify(sock, selectors.EVENT_READ, fd)
                return None
            except ssl.SSLWantWriteError:
                sel.modify(sock, selectors.EVENT_WRITE, fd)
                return None
            except (ssl.SSLError, OSError) as e:
                return fail(fd, "handshake: %s" % (getattr(e, "reason", None) or e))
            try:
                sock.send(query)        # under 300 bytes: fits any send buffer
            except (ssl.SSLError, OSError) as e:
                return fail(fd, "send: %s" % e)
            state[fd][1] = "answer"
            sel.modify(sock, selectors.EVENT_READ, fd)
            return None
        # phase == "answer"
        while True:
            try:
                data = sock.recv(4096)
            except ssl.SSLWantReadError:
                return None
            except (ssl.SSLError, OSError) as e:
                return fail(fd, "recv: %s" % e)
            if not data:
                return fail(fd, "closed by server")
            buf += data
            if args.alpn == "h2":
                try:
                    buf, ended = h2_answered(sock, buf)
                except (ssl.SSLError, OSError) as e:
                    return fail(fd, "send: %s" % e)
                state[fd][2] = buf
                if isinstance(ended, str):
                    return fail(fd, ended)
                if ended:
                    sel.unregister(sock)
                    done.append(state.pop(fd)[0])
                    return None
                continue
            state[fd][2] = buf
            if len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                sel.unregister(sock)
                done.append(state.pop(fd)[0])
                return None

    while (len(done) + sum(errors.values()) < args.count) and time.monotonic() < deadline:
        while len(state) < args.batch and started < args.count:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            started += 1
            rc = s.connect_ex(("127.0.0.1", args.port))
            if rc not in (0, 115):      # EINPROGRESS
                s.close()
                errors["connect: " + os.strerror(rc)] = errors.get(
                    "connect: " + os.strerror(rc), 0) + 1
                continue
            state[s.fileno()] = [s, "connect", b""]
            sel.register(s, selectors.EVENT_WRITE, s.fileno())
        for key, _ev in sel.select(timeout=0.5):
            if key.data in state:
                step(key.data)
    for fd in list(state):
        fail(fd, "unfinished at the time limit")
    print(json.dumps({"established": len(done), "errors": errors}), flush=True)
    # hold them until told (or the bounded hold time passes)
    sel2 = selectors.DefaultSelector()
    sel2.register(sys.stdin, selectors.EVENT_READ)
    sel2.select(timeout=args.hold)
    for s in done:
        s.close()
    return 0


def memory_test(server, count, timeout, tmp, kind="dot"):
    """(idle RSS KiB, loaded RSS KiB, established, errors) for a freshly
    started server; `kind` "doh": idle DoH (h2) connections."""
    time.sleep(1.0)
    idle = proc_rss_kib(server.pid)
    helper = subprocess.Popen(
        ["taskset", "-c", str(LOAD_CPU), sys.executable, os.path.abspath(__file__), "dot-idle",
         "--port", str(server.ports[kind]), "--count", str(count), "--ca", CA,
         "--alpn", "h2" if kind == "doh" else "dot",
         "--timeout", str(timeout), "--hold", str(timeout + 60)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(
            os.path.join(tmp, "dot-idle.log"), "ab"), text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE)))
    STARTED.append(helper)
    try:
        sel = selectors.DefaultSelector()
        sel.register(helper.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=timeout + 30):
            raise RuntimeError("idle-connection helper gave no report")
        line = helper.stdout.readline()
        rep = json.loads(line) if line.strip() else {"established": 0,
                                                    "errors": {"helper died": 1}}
        time.sleep(2.0)     # let the server settle
        loaded = proc_rss_kib(server.pid) if server.alive() else None
        alive = server.alive()
    finally:
        try:
            helper.stdin.write("close\n")
            helper.stdin.close()
        except OSError:
            pass
        try:
            helper.wait(timeout=30)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait(timeout=5)
        STARTED.remove(helper)
    return idle, loaded, rep["established"], rep["errors"], alive


DOQ_IDLE_BATCH = 50


def doq_memory_test(server, count, timeout, tmp, client):
    """memory_test() for idle DoQ connections: `count` of them (a multiple
    of DOQ_IDLE_BATCH) opened by dnsveil-doq processes of DOQ_IDLE_BATCH
    connections each (`-K`, certificate verified, one query per
    connection, then `--hold`), started one batch a second on the load
    CPU so that the handshakes of one batch are over before the next;
    RSS read while all are held; the established count is the answers
    the clients' summaries report when their hold ends."""
    time.sleep(1.0)
    idle = proc_rss_kib(server.pid)
    batches = max(1, count // DOQ_IDLE_BATCH)
    hold = batches + 10
    procs = []
    log_f = open(os.path.join(tmp, "doq-idle.log"), "ab")
    try:
        for _ in range(batches):
            p = subprocess.Popen(
                ["taskset", "-c", str(LOAD_CPU), client, "--name", "dns.test", "--ca", CA,
                 "-j", "-q", "-t", str(min(timeout, 30)), "-K", str(DOQ_IDLE_BATCH),
                 "--hold", str(hold), "127.0.0.1:%d" % server.ports["doq"],
                 "h1.bench.test", "A"],
                stdout=subprocess.PIPE, stderr=log_f, text=True)
            STARTED.append(p)
            procs.append(p)
            time.sleep(1.0)
        time.sleep(2.0)     # let the server settle
        loaded = proc_rss_kib(server.pid) if server.alive() else None
        alive = server.alive()
        est, errors = 0, {}
        for p in procs:
            try:
                out, _ = p.communicate(timeout=hold + timeout + 30)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate(timeout=10)
            summ = None
            for line in out.splitlines():
                if line.startswith("{") and '"summary"' in line:
                    summ = json.loads(line)
            if summ is None:
                errors["client gave no summary"] = errors.get("client gave no summary", 0) + 1
                continue
            est += summ.get("answers", 0)
            for k, v in (summ.get("errors") or {}).items():
                errors[k] = errors.get(k, 0) + v
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
            if p in STARTED:
                STARTED.remove(p)
        log_f.close()
    return idle, loaded, est, errors, alive


# ------------------------------------------------------------------ report

def memory_table(out, servers, rss_after, kind, mem):
    """The report's table of RSS with idle `kind` connections."""
    out.append("")
    out.append("| server | RSS idle (fresh start) | RSS after the throughput runs | "
               "RSS with idle %s connections | connections open | per connection |" % kind)
    out.append("|---|---:|---:|---:|---:|---:|")
    for s in servers:
        after = rss_after.get(s.name)
        after_s = "%.1f MiB" % (after / 1024) if after else "n/a"
        m = mem.get(s.name)
        if m is None:
            out.append("| %s | n/a | %s | n/a | n/a | n/a |" % (s.name, after_s))
            continue
        idle, loaded, est, errs, alive = m
        per = "%.1f KiB" % ((loaded - idle) / est) if est and loaded else "n/a"
        extra = ""
        if errs:
            extra = " (%s)" % ", ".join("%d %s" % (v, k) for k, v in sorted(errs.items()))
        if not alive:
            extra += " (server died)"
        out.append("| %s | %.1f MiB | %s | %s | %d%s | %s |" % (
            s.name, idle / 1024, after_s, "%.1f MiB" % (loaded / 1024) if loaded else "n/a",
            est, extra, per))


def fmt_qps(v):
    if v is None:
        return "n/a"
    return "%.1fk" % (v / 1000.0)


def fmt_ms(v):
    return "n/a" if v is None else ("%.3f" % v if v < 10 else "%.1f" % v)


def median_result(results):
    ok = [r for r in results if r.qps is not None]
    if not ok:
        return Result(note="; ".join(sorted({r.note for r in results if r.note})) or "failed")

    def med(attr):
        vals = [getattr(r, attr) for r in ok if getattr(r, attr) is not None]
        return statistics.median(vals) if vals else None
    m = Result(qps=med("qps"), mean_ms=med("mean_ms"), p50_ms=med("p50_ms"),
               p99_ms=med("p99_ms"), lost=med("lost"), errors=med("errors"), cpu=med("cpu"),
               up_cpu=med("up_cpu"), udp_drops=med("udp_drops"),
               server_drops=med("server_drops"), errors_are=ok[0].errors_are)
    m.per_cpu_med = statistics.median([r.per_cpu for r in ok if r.per_cpu is not None] or [0])
    m.exhausted = any(r.exhausted for r in ok)
    m.note = "; ".join(sorted({r.note for r in results if r.note}))
    return m


def row(workload, transport, server, r, ratio=""):
    if r is None or r.qps is None:
        why = "n/a" if r is None else "n/a (%s)" % r.note
        return "| %s | %s | %s | %s |  |  |  |  |  |  |  | %s |" % (
            workload, transport, server, why, ratio)
    per_cpu = getattr(r, "per_cpu_med", None) or r.per_cpu

    def pct(v):
        return "%.0f%%" % (100 * v) if v is not None else ""
    return "| %s | %s | %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        workload, transport, server, fmt_qps(r.qps), " †" if r.exhausted else "",
        fmt_ms(r.mean_ms), fmt_ms(r.p50_ms), fmt_ms(r.p99_ms),
        "%d" % r.lost + (" (+%d %s)" % (r.errors, r.errors_are) if r.errors else "") +
        (" (UDP drops: %d by the server's socket, %d on the host)" % (
            r.server_drops or 0, r.udp_drops) if r.udp_drops else "") +
        (" (%s)" % r.note if r.note else ""),
        pct(r.cpu), fmt_qps(per_cpu), pct(r.up_cpu), ratio)


def machine_header(args, runs, seconds, miss_seconds):
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def ver(cmd, pat):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            m = re.search(pat, r.stdout + r.stderr)
            return m.group(1) if m else "?"
        except (OSError, subprocess.SubprocessError):
            return "?"
    commit = ver(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], r"(\w+)")
    lines = [
        "### dnsveil vs dnsdist vs Unbound as frontends%s" % (" (--quick)" if args.quick else ""),
        "",
        "- %s, %s; %d CPUs: %s; Linux %s; load average at start %s" % (
            datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), os.uname().nodename,
            os.cpu_count(), model, os.uname().release,
            open("/proc/loadavg").read().split()[0]),
        "- dnsveil %s (commit %s, release build, `--workers 1`), dnsdist %s, Unbound %s, "
        "dnsperf %s, h2load %s" % (
            ver([args.dnsveil, "--version"], r"(\d[\w.\-+]*)"), commit,
            ver([DNSDIST, "--version"], r"dnsdist (\S+)"), ver([UNBOUND, "-V"], r"Version (\S+)"),
            ver([DNSPERF, "-h"], r"Version (\S+)"), ver([H2LOAD, "--version"], r"nghttp2/(\S+)")),
        "- pinning: each server under test on CPU %d (alone); dnsperf/h2load, the upstream "
        "Unbound and the idle-connection helper on CPU %d (for the ceiling rows the upstream is moved to "
        "CPU %d, the server's place)" % (SERVER_CPU, LOAD_CPU, SERVER_CPU),
        "- load: %s; each figure the median of %d run(s) of %d s (miss-heavy: %d s), servers "
        "interleaved run by run" % (TRANSPORTS[0].runner.describe() + " (-m tcp/dot likewise)" +
                                    "".join("; %s: %s" % (t.label, t.runner.describe())
                                            for t in TRANSPORTS
                                            if isinstance(t.runner, (H2loadRunner,
                                                                     DoqRunner))),
                                    runs, seconds, miss_seconds),
        "- upstream: one Unbound (1 thread) serving bench.test (10,000 A records + a wildcard); "
        "dnsveil asks it over its pooled %s, dnsdist and Unbound over UDP "
        "(dnsdist: TCP for TCP/DoT clients)" % (
            "TCP connections (its misses over UDP: pool.loopback-udp)"
            if args.dnsveil_upstream == "tcp" else "UDP sockets")
        + ("; with --upstream kresd every server forwards to one Knot Resolver (kresd, "
           "on the load generator's CPU) that stubs bench.test to that Unbound"
           if args.upstream == "kresd" else ""),
        "- all three frontends run at once (pinned to CPU %d), idle except the one being "
        "measured" % SERVER_CPU,
        "- cache-hit: 1,000 names repeated, every cache warmed first through the same "
        "transport; miss-heavy: every query a new name (`m<random>.bench.test`, the "
        "upstream's wildcard; every server and run has names of its own, new to the "
        "upstream's cache too), so every query goes upstream; DoH: h2load POSTs one "
        "query (the first name of the cache-hit file, id 0) again and again, a pure "
        "cache-hit workload, checked first with one verified `curl --http2` POST",
        "",
    ]
    return lines


# ------------------------------------------------------------------ main run

BUSY_LIMIT = 0.05       # CPU-0 time of other processes that earns a run a note


def busy_note(notes, what, res):
    """A note when other processes (another job on the machine) used more
    than BUSY_LIMIT of the server's CPU or of the load generator's during a
    run: its figures are suspect."""
    log("  %s answers/s, server CPU %s; other processes: CPU %d %s, CPU %d %s" % (
        fmt_qps(res.qps), "%.0f%%" % (100 * res.cpu) if res.cpu is not None else "?",
        SERVER_CPU, "%.0f%%" % (100 * res.others) if res.others is not None else "?",
        LOAD_CPU, "%.0f%%" % (100 * res.others_load) if res.others_load is not None else "?"))
    busy = []
    if res.others is not None and res.others > BUSY_LIMIT:
        busy.append("%.0f%% of CPU %d (the server's)" % (100 * res.others, SERVER_CPU))
    if res.others_load is not None and res.others_load > BUSY_LIMIT:
        busy.append("%.0f%% of CPU %d (the load generator's)" % (100 * res.others_load,
                                                                LOAD_CPU))
    if busy:
        notes.append("%s: other processes used %s" % (what, " and ".join(busy)))

SETTLE_CPU = 0.02       # a process is idle under 2% of a CPU ...
SETTLE_WINDOW = 0.25    # ... over this many seconds
SETTLE_MAX = 20.0       # at most this long a wait before a run


def settle(procs, notes, what):
    """Wait until every process of `procs` (the servers and the upstreams)
    is idle before the next run: a server that is still working off the
    run before (a frontend answering the backlog of its receive buffer,
    retrying the queries it lost) would take CPU 0 and the upstream's CPU
    from the server being measured.  At most SETTLE_MAX seconds, then a
    note."""
    t0 = time.monotonic()
    while True:
        before = {}
        for name, pid in procs:
            try:
                before[name] = proc_cpu_seconds(pid)
            except OSError:
                pass
        time.sleep(SETTLE_WINDOW)
        busy = []
        for name, pid in procs:
            try:
                used = proc_cpu_seconds(pid) - before[name]
            except (OSError, KeyError):
                continue
            if used > SETTLE_CPU * SETTLE_WINDOW:
                busy.append("%s %.0f%%" % (name, 100.0 * used / SETTLE_WINDOW))
        waited = time.monotonic() - t0
        if not busy:
            if waited > 2 * SETTLE_WINDOW:
                log("  waited %.1f s for the servers to go idle before %s" % (waited, what))
            return
        if waited >= SETTLE_MAX:
            notes.append("%s: still busy after %.0f s of waiting: %s" % (
                what, waited, ", ".join(busy)))
            return


def run_main(args):
    os.sched_setaffinity(0, {LOAD_CPU})
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    runs = args.runs or (1 if args.quick else 3)
    seconds = args.seconds or (5 if args.quick else 10)
    miss_seconds = args.miss_seconds or 5
    conns = args.connections if args.connections is not None else 10000
    workloads = [w for w in ("hit", "miss") if w in args.workloads.split(",")]
    transports = [t for t in TRANSPORTS if t.key in args.transports.split(",")]
    args.dnsveil = os.path.abspath(args.dnsveil)
    doq_client = os.path.abspath(args.doq_client or os.path.join(
        os.path.dirname(args.dnsveil), "dnsveil-doq"))
    for t in TRANSPORTS:
        if t.key == "doq":
            t.runner = DoqRunner(doq_client, DOQ_CONNECTIONS, DOQ_STREAMS) \
                if os.access(doq_client, os.X_OK) else None
    if not os.access(args.dnsveil, os.X_OK):
        log("no dnsveil binary at %s" % args.dnsveil)
        return 1
    for f in (CERT, KEY, CA):
        if not os.path.exists(f):
            log("missing %s: run sh certs/make-dev-cert.sh" % f)
            return 1
    tmp = tempfile.mkdtemp(prefix="dnsveil-bench-")
    TMP_DIRS.append(tmp)
    log("temp dir: %s" % tmp)
    header = machine_header(args, runs, seconds, miss_seconds)
    notes = []
    start_failures = []

    # which rows dnsveil can take
    implemented = {}
    for t in TRANSPORTS:
        ok, why = dnsveil_implements(args.dnsveil, t)
        implemented[t.key] = (ok, why)
        if not ok:
            log("dnsveil: %s listener: %s -> n/a" % (t.label, why))
    dv_transports = [t for t in TRANSPORTS if implemented[t.key][0]]

    hitq = os.path.join(tmp, "hit.queries")
    write_hit_queries(hitq)

    up = auth = Upstream(tmp)
    log("starting the upstream Unbound on port %d (CPU %d)" % (up.ports["dns"], LOAD_CPU))
    up.start(cpu=LOAD_CPU)
    if args.upstream == "kresd":
        # the authority stays where it is; kresd becomes the upstream of
        # every server under test (and the ceiling's target)
        up = KresdUpstream(tmp, auth.ports["dns"])
        log("starting kresd on port %d (CPU %d)" % (up.ports["dns"], LOAD_CPU))
        up.start(cpu=LOAD_CPU)

    policy_list = None
    if args.policy_list:
        # --policy-list N: dnsveil with a block list of N names for every
        # client, beside the same binary without one (the baseline rows)
        policy_list = os.path.join(tmp, "blocked.list")
        write_policy_list(policy_list, args.policy_list)
    dv = Dnsveil(tmp, args.dnsveil, up.ports["dns"], dv_transports, args.dnsveil_upstream,
                 policy_list=policy_list,
                 admin_port=free_port() if args.admin_scrape else None,
                 extra_yaml=args.dnsveil_yaml)
    servers = [dv]
    base = None
    if policy_list:
        base = Dnsveil(tmp, args.baseline or args.dnsveil, up.ports["dns"], dv_transports,
                       args.dnsveil_upstream, name="dnsveil baseline", required=False)
        servers.append(base)
    elif args.baseline:
        # another dnsveil build (an earlier commit) on the same upstream, in
        # the same run: before/after figures of a change, side by side
        base = Dnsveil(tmp, args.baseline, up.ports["dns"], dv_transports,
                       args.dnsveil_upstream, name="dnsveil baseline", required=False)
        servers.append(base)
    if not args.no_peers:
        servers += [Dnsdist(tmp, up.ports["dns"]), UnboundFrontend(tmp, up.ports["dns"])]
    for s in servers:
        log("starting %s on ports %s (CPU %d)" % (s.name, s.ports, SERVER_CPU))
        try:
            s.start()
        except RuntimeError as e:
            s.failed = str(e)
            log("%s did not start: %s" % (s.name, e))
            start_failures.append("%s did not start: %s" % (s.name, e))
            if s.required:
                raise
    live = [s for s in servers if s.failed is None]
    if policy_list:
        policy_note(notes, dv, base, args.policy_list)
    if dv.admin_port and dv.failed is None:
        start_scraper(dv.admin_port)

    def idle_procs():
        """What must be idle before a run: every live server and the
        upstream(s)."""
        return [(x.name, x.pid) for x in live + [up] + ([auth] if auth is not up else [])
                if x.alive()]

    results = {}        # (workload, transport key, server name) -> Result
    miss_count = args.miss_names or (1000000 if args.quick else 1500000)

    def queries(workload):
        """(query file, seconds, read once) of one run.  Miss-heavy: a new
        file for every server and run, so that the names are new to the
        upstream's cache too, not the ones the server before just had the
        upstream resolve."""
        if workload == "hit":
            return hitq, seconds, False
        q = os.path.join(tmp, "miss.queries")
        write_miss_queries(q, miss_count)
        return q, miss_seconds, True

    # ---- the ceiling: dnsperf over UDP straight at the upstream, moved to CPU 0
    udp = TRANSPORTS[0]
    os.sched_setaffinity(up.pid, {SERVER_CPU})
    try:
        for workload in workloads:
            rs = []
            for i in range(runs):
                q, secs, once = queries(workload)
                settle(idle_procs(), notes, "ceiling %s run %d" % (workload, i + 1))
                log("ceiling %s run %d/%d" % (workload, i + 1, runs))
                rs.append(udp.runner.run(up.ports["dns"], q, secs, up.pid, tmp, once=once))
                busy_note(notes, "ceiling %s run %d" % (workload, i + 1), rs[-1])
            results[(workload, "ceiling", up.name)] = median_result(rs)
    finally:
        os.sched_setaffinity(up.pid, {LOAD_CPU})

    # ---- the frontends
    for workload in workloads:
        for t in transports:
            if t.runner is None or workload not in getattr(t.runner, "workloads",
                                                           ("hit", "miss")):
                continue
            targets = [s for s in live if t.port in s.ports and
                       (s is not dv or implemented[t.key][0])]
            if not targets:
                continue
            if workload == "hit":
                for s in targets:
                    log("warming %s over %s" % (s.name, t.label))
                    t.runner.warm(s.ports[t.port], hitq, tmp)
            per = {s.name: [] for s in targets}
            for i in range(runs):
                order = targets[i % len(targets):] + targets[:i % len(targets)]
                for s in order:
                    if not s.alive():
                        per[s.name].append(Result(note="%s died" % s.name))
                        continue
                    q, secs, once = queries(workload)
                    settle(idle_procs(), notes, "%s %s %s run %d" % (
                        workload, t.label, s.name, i + 1))
                    log("%s %s %s run %d/%d" % (workload, t.label, s.name, i + 1, runs))
                    per[s.name].append(t.runner.run(s.ports[t.port], q, secs, s.pid, tmp,
                                                    once=once, upstream_pid=up.pid))
                    busy_note(notes, "%s %s %s run %d" % (workload, t.label, s.name, i + 1),
                              per[s.name][-1])
            for s in targets:
                results[(workload, t.key, s.name)] = median_result(per[s.name])

    rss_after = {s.name: proc_rss_kib(s.pid) for s in live if s.alive()}
    for s in live:
        was_alive = s.alive()
        rc = s.stop()
        if not was_alive:
            notes.append("%s died during the throughput runs (status %s); log tail:\n%s" % (
                s.name, rc, tail(s.log, 10)))
        elif s in (dv, base) and rc != 0:
            notes.append("%s exited with status %s on SIGTERM" % (s.name, rc))

    # ---- memory with idle connections, one fresh server at a time
    def memory_rows(kind, key, count, measure, skip=lambda s: False):
        """{server name: figures} of every server that speaks `key`,
        started fresh and holding `count` idle connections (or as many as
        it can: memory_connections)."""
        rows = {}
        if count <= 0:
            return rows
        for s in servers:
            if s.failed is not None or key not in s.ports or skip(s) or \
                    (s in (dv, base) and not implemented[key][0]):
                continue
            n = s.memory_connections(count) if hasattr(s, "memory_connections") else count
            log("memory: %s with %d idle %s connections" % (s.name, n, kind))
            try:
                s.start(memory_test=True)
            except RuntimeError as e:
                notes.append("%s memory test: %s" % (kind, e))
                continue
            try:
                rows[s.name] = measure(s, n)
            finally:
                s.stop()
        return rows

    mem = memory_rows("DoT", "dot", conns,
                      lambda s, n: memory_test(s, n, args.connect_timeout, tmp))
    # the Unbound frontend listens for DoT only in its memory configuration
    # (see memory_slots)
    mem_doh = memory_rows(
        "DoH", "doh", args.doh_connections if args.doh_connections is not None else 2000,
        lambda s, n: memory_test(s, n, args.connect_timeout, tmp, "doh"),
        skip=lambda s: isinstance(s, UnboundFrontend))
    # dnsveil only: no DoQ in dnsdist 1.7 or Unbound 1.17
    doq_runner = next((t.runner for t in TRANSPORTS if t.key == "doq"), None)
    mem_doq = {} if doq_runner is None else memory_rows(
        "DoQ", "doq", args.doq_connections if args.doq_connections is not None else 1000,
        lambda s, n: doq_memory_test(s, n, args.connect_timeout, tmp, doq_runner.binary))

    # ---- what the servers said
    for s in [up] + servers:
        if s.log and os.path.exists(s.log):
            with open(s.log, errors="replace") as f:
                lines = f.readlines()
            bad = [ln.rstrip() for ln in lines if "dnsveil-stats" not in ln and
                   re.search(r"error|warn|fatal|assert|fail", ln, re.I)]
            for i, ln in enumerate(ln for ln in lines if ln.startswith("dnsveil-stats ")):
                try:
                    st = json.loads(ln.split(" ", 1)[1])
                except ValueError:
                    continue
                odd = ["%s %s" % (k, v) for k, v in st.items() if v and re.search(
                    r"servfail|refused|overload|fail|timeout|dropped|error|expired|"
                    r"rate_limited|hedged|fallback", k)]
                notes.append("dnsveil counters at exit (%s instance): %d queries; %s" % (
                    "throughput" if i == 0 else "memory-test", st.get("queries", 0),
                    ", ".join(odd) if odd else "no errors, drops, time-outs or fallbacks"))
            if bad:
                uniq = list(dict.fromkeys(bad))
                notes.append("%s log: %d error/warning line(s), e.g.: %s" % (
                    s.name, len(bad), " / ".join(uniq[:3])))
    up.stop()

    # ---- the report
    out = list(header)
    out.append("| workload | transport | server | answers/s | mean ms | p50 ms | p99 ms | "
               "lost | server CPU | answers per server-CPU-second | upstream CPU | "
               "dnsveil / dnsdist |")
    out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    wl_label = {"hit": "cache-hit", "miss": "miss-heavy"}
    doq_vs_dot = []

    def why_na(s, t, workload):
        if s.failed is not None:
            return "did not start"
        if s in (dv, base) and not implemented[t.key][0]:
            return implemented[t.key][1]
        if t.port not in s.ports:
            return s.na.get(t.key, "no listener")
        if t.runner is None:
            return NO_RUNNER.get(t.key, "no load generator in the bench yet")
        if workload not in getattr(t.runner, "workloads", ("hit", "miss")):
            return t.runner.why_not.get(workload, "not measured")
        return None

    for workload in workloads:
        wl = wl_label[workload]
        out.append(row(wl, "Do53 UDP", "%s alone (ceiling)" % up.name,
                       results.get((workload, "ceiling", up.name))))
        for t in transports:
            nas = [(s, why_na(s, t, workload)) for s in servers]
            if all(w for _, w in nas) and len({w for _, w in nas}) == 1:
                out.append("| %s | %s | all | n/a: %s |  |  |  |  |  |  |  |  |" % (
                    wl, t.label, nas[0][1]))
                continue
            if all(w for _, w in nas):
                # one line for a transport nobody could be measured on
                out.append("| %s | %s | all | n/a: %s |  |  |  |  |  |  |  |  |" % (
                    wl, t.label, "; ".join("%s: %s" % (s.name, w) for s, w in nas)))
                continue
            for s, w in nas:
                if w:
                    out.append(row(wl, t.label, s.name, Result(note=w)))
                    continue
                r = results.get((workload, t.key, s.name))
                ratio = ""
                if s is base and r is not None and r.qps:
                    d = results.get((workload, t.key, dv.name))
                    if d is not None and d.qps:
                        rpc = (getattr(d, "per_cpu_med", 0) or 0) / (getattr(r, "per_cpu_med", 0) or 1)
                        ratio = "dnsveil ÷ baseline: ×%.2f per CPU-s, ×%.2f answers/s" % (
                            rpc, d.qps / r.qps)
                if s is dv and r is not None and r.qps is not None:
                    d = results.get((workload, t.key, "dnsdist"))
                    if d is not None and d.qps:
                        rpc = (getattr(r, "per_cpu_med", 0) or 0) / (getattr(d, "per_cpu_med", 0) or 1)
                        ratio = "×%.2f per CPU-s, ×%.2f answers/s" % (rpc, r.qps / d.qps)
                    elif t.key == "doq":
                        # no DoQ peer: compare with dnsveil's own DoT row
                        dot = results.get((workload, "dot", s.name))
                        if dot is not None and dot.qps:
                            rpc = (getattr(r, "per_cpu_med", 0) or 0) / \
                                (getattr(dot, "per_cpu_med", 0) or 1)
                            ratio = "DoQ / dnsveil DoT: ×%.2f per CPU-s, ×%.2f answers/s" % (
                                rpc, r.qps / dot.qps)
                            inflight = t.runner.connections * t.runner.streams
                            doq_vs_dot.append(
                                "%s: dnsveil DoQ %s answers/s (%s per server-CPU-second), "
                                "p50 %s ms, p99 %s ms from stream opening (with %d queries "
                                "always submitted, Little's law puts the mean from submission "
                                "at %d ÷ answers/s = %s ms: the rest is waiting for stream "
                                "credit, which the client does not time); dnsveil DoT %s "
                                "answers/s (%s per server-CPU-second), mean %s, p50 %s, p99 "
                                "%s ms (dnsperf, from sending); DoQ/DoT ×%.2f per CPU-second, "
                                "×%.2f answers/s (target ≥ 0.8 per CPU-second). Different "
                                "clients: the ratio compares client+server pairs" % (
                                    wl, fmt_qps(r.qps), fmt_qps(r.per_cpu_med),
                                    fmt_ms(r.p50_ms), fmt_ms(r.p99_ms), inflight, inflight,
                                    fmt_ms(1000.0 * inflight / r.qps), fmt_qps(dot.qps),
                                    fmt_qps(dot.per_cpu_med), fmt_ms(dot.mean_ms),
                                    fmt_ms(dot.p50_ms), fmt_ms(dot.p99_ms), rpc,
                                    r.qps / dot.qps))
                out.append(row(wl, t.label, s.name, r, ratio))
    for kind, mem_kind in (("DoT", mem), ("DoH", mem_doh), ("DoQ", mem_doq)):
        memory_table(out, servers, rss_after, kind, mem_kind)
    out.append("")
    out.append("answers/s: dnsperf's queries per second (answers received). mean, p50, p99: "
               "over every answer's latency (`dnsperf -v`). lost: queries unanswered after "
               "%d s during the run (those still in flight when the time limit stops dnsperf "
               "are not counted), and answers other than NOERROR; UDP drops: datagrams dropped "
               "during the run for a full receive buffer, by the server's own socket(s) and on "
               "the whole host (dnsperf's socket, the upstream's, other processes'). server CPU, upstream CPU: "
               "utime+stime of that process over the run's wall time (100%% = one core). "
               "answers per server-CPU-second = answers/s ÷ server CPU. dnsveil / dnsdist: "
               "dnsveil's figure over dnsdist's on the same workload and transport. "
               "† = the query file ran out before the time limit. DoH rows (h2load): "
               "answers/s = 2xx responses per second of h2load's measuring time; latencies "
               "from each request being sent to the end of its response, from "
               "`h2load --log-file`; lost = failed streams (+ responses other than 2xx). "
               "DoQ rows (dnsveil-doq, the project's client; no packaged DoQ peer on "
               "Debian 12): answers/s = the client's qps (answers from the first query sent "
               "to the last answer); p50, p99 from its summary, each latency measured from "
               "the opening of the query's stream to its answer (it prints no mean); lost = "
               "queries without an answer; the last column compares with dnsveil's own DoT "
               "row (same connections × in flight, cache hits; DoQ repeats 64 of the 1,000 "
               "names). "
               "Per connection = "
               "(RSS with the connections − RSS idle) ÷ connections; each connection made a "
               "verified TLS 1.3 handshake and one query (DoH: one HTTP/2 POST), then stayed "
               "idle; the Unbound frontend's memory configuration listens for DoT only "
               "(its DoH row says n/a). DoQ: dnsveil-doq processes of %d connections each "
               "(one query per connection, then --hold), a batch a second; dnsdist 1.7 "
               "and Unbound 1.17 have no DoQ (n/a)." %
               (TRANSPORTS[0].runner.timeout, DOQ_IDLE_BATCH))
    out.append("")
    for line in doq_vs_dot:
        out.append("- DoQ vs DoT, %s" % line)
    out.append("- load average at the end: %s" % open("/proc/loadavg").read().split()[0])
    if dv.admin_port:
        out.append("- %s: /metrics scraped every second: %d scrapes, %d failed%s, %d bytes each" % (
            dv.name, SCRAPES["ok"], SCRAPES["failed"],
            " (last: %s)" % SCRAPES["error"] if SCRAPES["failed"] else "", SCRAPES["bytes"]))
    for n in notes + start_failures:
        out.append("- note: " + n.replace("\n", " ").strip())
    print("\n".join(out), flush=True)
    return 1 if start_failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--dnsveil", required=True)
    r.add_argument("--doq-client",
                   help="the DoQ load generator (default: dnsveil-doq next to --dnsveil)")
    r.add_argument("--quick", action="store_true", help="1 run of 5 s per figure")
    r.add_argument("--runs", type=int, help="runs per figure (default 3, --quick 1)")
    r.add_argument("--seconds", type=int, help="seconds per run (default 10, --quick 5)")
    r.add_argument("--miss-seconds", type=int,
                   help="seconds per miss-heavy run (default 5)")
    r.add_argument("--miss-names", type=int, help="names per miss-heavy query file")
    r.add_argument("--connections", type=int, help="idle DoT connections (default 10000, 0 = skip)")
    r.add_argument("--doh-connections", type=int,
                   help="idle DoH (h2) connections (default 2000, 0 = skip)")
    r.add_argument("--doq-connections", type=int,
                   help="idle DoQ connections (default 1000, a multiple of %d; 0 = skip)"
                   % DOQ_IDLE_BATCH)
    r.add_argument("--connect-timeout", type=int, default=90,
                   help="seconds to open the idle connections")
    r.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    r.add_argument("--baseline", help="another dnsveil binary (say, the commit before a "
                   "change) measured beside --dnsveil in the same run")
    r.add_argument("--policy-list", type=int, metavar="N",
                   help="load a generated block list of N names (b{i}.blocked.test) into "
                        "dnsveil's default group and measure the same binary without it as "
                        "the baseline (the issue-13 target: 1000000)")
    r.add_argument("--admin-scrape", action="store_true",
                   help="give the dnsveil under test (not the baseline) an admin listener "
                        "and GET its /metrics every second for the whole run (the cost "
                        "of metrics; pair with --baseline for the same binary without)")
    r.add_argument("--dnsveil-yaml", default="",
                   help="YAML appended to the config of the dnsveil under test (not the "
                        "baseline), {DIR} its directory: e.g. the query log or dnstap, "
                        "measured against --baseline (the same binary without it)")
    r.add_argument("--no-peers", action="store_true",
                   help="leave dnsdist and the Unbound frontend out (dnsveil rows only)")
    r.add_argument("--workloads", default="hit,miss", help="of hit,miss (default both)")
    r.add_argument("--transports", default=",".join(t.key for t in TRANSPORTS),
                   help="of %s (default all)" % ",".join(t.key for t in TRANSPORTS))
    r.add_argument("--upstream", choices=("unbound", "kresd"), default="unbound",
                   help="the resolver every server forwards to: the authority Unbound itself "
                        "(default), or Knot Resolver (kresd) stubbing bench.test to it")
    r.add_argument("--dnsveil-upstream", choices=("tcp", "udp"), default="tcp",
                   help="how dnsveil reaches the upstream (default tcp, its recommended set-up)")
    d = sub.add_parser("dot-idle")
    d.add_argument("--port", type=int, required=True)
    d.add_argument("--count", type=int, required=True)
    d.add_argument("--ca", required=True)
    d.add_argument("--batch", type=int, default=200)
    d.add_argument("--timeout", type=int, default=90)
    d.add_argument("--hold", type=int, default=150)
    d.add_argument("--alpn", choices=("dot", "h2"), default="dot",
                   help="h2: DoH connections (one POST each) instead of DoT")
    args = ap.parse_args()
    if args.cmd == "dot-idle":
        return dot_idle_main(args)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    failed = False
    try:
        rc = run_main(args)
        failed = rc != 0
        return rc
    except RuntimeError as e:
        failed = True
        log("bench: %s" % e)
        return 1
    finally:
        cleanup()
        for d in TMP_DIRS:
            if args.keep or failed:
                log("kept %s (configs and logs)" % d)
            else:
                shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
