#!/usr/bin/python3
"""Integration test harness for dnsveil.

Everything runs on loopback: real Unbound instances (started here, never the
system service), a tiny slow authoritative server written in Python, the
dnsveil binary named by $DNSVEIL, and real clients (kdig, dnsperf) or
dnspython-built packets.

Environment (set by tests/CMakeLists.txt):
  DNSVEIL        path of the binary under test (tests fail clearly without it)
  DV_SANITIZE    1 when the binary is an ASan+UBSan build: timeouts and loads
                 are scaled, and any sanitizer report in its stderr fails
  DV_SOURCE_DIR  repository root
  DV_KEEP_TMP=1  keep every temporary directory (they are kept anyway, and
                 their paths printed, when a test fails)

Run `/usr/bin/python3 tests/integration/harness.py selftest` to check the
Unbound / slow-authority / kdig parts without dnsveil.
"""

import atexit
import fcntl
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

# ---------------------------------------------------------------- settings

SANITIZE = os.environ.get("DV_SANITIZE", "0").strip().lower() in (
    "1", "on", "true", "yes")
#: multiply every timeout by this; divide every load by it
SCALE = 3.0 if SANITIZE else 1.0
SOURCE_DIR = os.environ.get("DV_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEEP_TMP = os.environ.get("DV_KEEP_TMP", "") not in ("", "0")

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


# ---------------------------------------------------------------- DNS helpers

def make_query(name, rdtype="A", edns=0, payload=1232, rd=True, options=None, qid=None):
    """A dnspython query; edns=None for a query without OPT."""
    if edns is None:
        q = dns.message.make_query(name, rdtype, use_edns=False)
    else:
        q = dns.message.make_query(name, rdtype)
        # (make_query's use_edns=1 quietly means version 0: set it here)
        q.use_edns(edns, payload=payload, options=options or [])
    if not rd:
        q.flags &= ~dns.flags.RD
    if qid is not None:
        q.id = qid
    return q


def udp_query(port, name, rdtype="A", host="127.0.0.1", timeout=None, **kw):
    q = make_query(name, rdtype, **kw)
    return dns.query.udp(q, host, port=port, timeout=timeout or scaled(3.0),
                         ignore_trailing=True)


def tcp_query(port, name, rdtype="A", host="127.0.0.1", timeout=None, **kw):
    q = make_query(name, rdtype, **kw)
    return dns.query.tcp(q, host, port=port, timeout=timeout or scaled(3.0))


def udp_raw(port, payload, host="127.0.0.1", timeout=1.0):
    """Send raw bytes over UDP; return the raw answer or None on timeout."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(payload, (host, port))
        try:
            data, _ = s.recvfrom(65535)
            return data
        except socket.timeout:
            return None
    finally:
        s.close()


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def tcp_send_msg(sock, wire):
    sock.sendall(struct.pack("!H", len(wire)) + wire)


def tcp_recv_msg(sock):
    (n,) = struct.unpack("!H", recv_exact(sock, 2))
    return recv_exact(sock, n)


def parse_header(wire):
    """(id, flags, qdcount, ancount, nscount, arcount) of raw bytes."""
    if wire is None or len(wire) < 12:
        raise AssertionError("not a DNS message: %r" % (wire,))
    return struct.unpack("!HHHHHH", wire[:12])


def header_rcode(wire):
    return parse_header(wire)[1] & 0xF


def header_opcode(wire):
    return (parse_header(wire)[1] >> 11) & 0xF


def ede_codes(msg):
    """Extended DNS Error info codes (RFC 8914, option 15) in a response."""
    codes = []
    for opt in (msg.options or []):
        if int(opt.otype) == 15:
            if hasattr(opt, "code"):
                codes.append(int(opt.code))
            else:  # GenericOption
                data = opt.data if hasattr(opt, "data") else opt.to_wire()
                codes.append(struct.unpack("!H", data[:2])[0] if len(data) >= 2 else -1)
    return codes


def rrset_texts(msg, section="answer"):
    out = []
    for rrset in getattr(msg, section):
        for rd in rrset:
            out.append((rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype),
                        rrset.ttl, rd.to_text()))
    return out


def txt_value(msg):
    """Concatenated strings of the first TXT record of the answer, or None."""
    for rrset in msg.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            for rd in rrset:
                return b"".join(rd.strings).decode()
    return None


def big_txt_strings():
    """The strings of big.example.test TXT (deterministic)."""
    return ["%02d" % i + chr(ord("a") + i) * (BIG_TXT_STRLEN - 2)
            for i in range(BIG_TXT_STRINGS)]


def host_addr(i):
    """Address of h<i>.example.test: 198.18.0.0/15 (benchmarking range)."""
    return "198.18.%d.%d" % (i // 256, i % 256)


def unique_label(prefix="u"):
    return "%s%d-%06x" % (prefix, os.getpid(), random.getrandbits(24))


# ---------------------------------------------------------------- processes

def _pid_alive(proc):
    return proc is not None and proc.poll() is None


def _terminate(proc, sig=signal.SIGTERM, timeout=5.0):
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


class SlowAuthority:
    """A small authoritative server for slow.example.test on 127.0.0.1 (UDP
    and TCP, same port).  Every A query for a name under the zone is answered
    (AA, TTL 300) after `delay` seconds in its own thread; apex SOA/NS are
    answered at once; other types get NOERROR/NODATA with the SOA; names
    outside the zone get REFUSED.  `count` counts the queries received."""

    def __init__(self, delay=1.0, zone=SLOW_ZONE, address="192.0.2.200"):
        self.delay = delay
        self.zone = dns.name.from_text(zone)
        self.address = address
        self.port = free_port()
        self.count = 0
        self.names = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.2)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(64)
        self.tcp.settimeout(0.2)
        self._udp_lock = threading.Lock()

    # -- answers
    def _soa(self):
        return dns.rrset.from_text(self.zone, 60, "IN", "SOA",
                                   "ns.%s hostmaster.%s 1 3600 600 86400 60" % (
                                       self.zone, self.zone))

    def answer(self, wire):
        """(response wire, delay) for a query, or (None, 0)."""
        try:
            q = dns.message.from_wire(wire)
        except Exception:  # noqa: BLE001 - garbage: ignore
            return None, 0
        if not q.question or q.flags & dns.flags.QR:
            return None, 0
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        r.flags &= ~dns.flags.RA
        qname = q.question[0].name
        qtype = q.question[0].rdtype
        with self._lock:
            self.count += 1
            self.names.append(qname.to_text())
        if not qname.is_subdomain(self.zone):
            r.flags &= ~dns.flags.AA
            r.set_rcode(dns.rcode.REFUSED)
            return r.to_wire(), 0
        delay = 0
        if qname == self.zone and qtype == dns.rdatatype.SOA:
            r.answer.append(self._soa())
        elif qname == self.zone and qtype == dns.rdatatype.NS:
            r.answer.append(dns.rrset.from_text(self.zone, 300, "IN", "NS",
                                                "ns.%s" % self.zone))
        elif qname == self.zone:
            r.authority.append(self._soa())
        elif qtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(qname, 300, "IN", "A", self.address))
            delay = self.delay
        else:
            r.authority.append(self._soa())
        return r.to_wire(), delay

    # -- serving
    def start(self):
        for target in (self._udp_loop, self._tcp_loop):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _later(self, delay, fn):
        if delay <= 0:
            fn()
            return
        t = threading.Timer(delay, fn)
        t.daemon = True
        t.start()

    def _udp_loop(self):
        while not self._stop.is_set():
            try:
                wire, peer = self.udp.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            resp, delay = self.answer(wire)
            if resp is None:
                continue

            def send(resp=resp, peer=peer):
                if self._stop.is_set():
                    return
                with self._udp_lock:
                    try:
                        self.udp.sendto(resp, peer)
                    except OSError:
                        pass
            self._later(delay, send)

    def _tcp_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._tcp_conn, args=(conn,), daemon=True)
            t.start()

    def _tcp_conn(self, conn):
        wlock = threading.Lock()
        conn.settimeout(30)
        try:
            while not self._stop.is_set():
                try:
                    wire = tcp_recv_msg(conn)
                except (OSError, ConnectionError):
                    return
                resp, delay = self.answer(wire)
                if resp is None:
                    continue

                def send(resp=resp):
                    with wlock:
                        try:
                            tcp_send_msg(conn, resp)
                        except OSError:
                            pass
                self._later(delay, send)
        finally:
            # answers still pending are dropped with the connection
            def close():
                try:
                    conn.close()
                except OSError:
                    pass
            self._later(self.delay + 0.5, close)

    def stop(self):
        self._stop.set()
        for s in (self.udp, self.tcp):
            try:
                s.close()
            except OSError:
                pass


def zone_text(whoami="local"):
    """The example.test zone.  Every record has an explicit TTL."""
    z = ["$ORIGIN %s" % ZONE,
         "@ 120 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60",
         "@ 300 IN NS ns.example.test.",
         "ns 300 IN A 127.0.0.1",
         "www 300 IN A 192.0.2.1",
         "www 300 IN AAAA 2001:db8::1",
         "mail 300 IN A 192.0.2.25",
         # a CNAME chain: alias -> alias2 -> www
         "alias 300 IN CNAME alias2.example.test.",
         "alias2 300 IN CNAME www.example.test.",
         "big 300 IN TXT " + " ".join('"%s"' % s for s in big_txt_strings()),
         # ~760 bytes: over 512 (no EDNS) but under 1232
         "mid 300 IN TXT " + " ".join('"%s"' % s for s in big_txt_strings()[:3]),
         # who answers: TTL 0 at the name itself, and a wildcard so every
         # query can use a fresh (uncacheable) name
         'whoami 0 IN TXT "%s"' % whoami,
         '*.whoami 300 IN TXT "%s"' % whoami,
         "*.wild 300 IN A 192.0.2.99",
         ]
    for i in range(NUM_HOSTS):
        z.append("h%d 300 IN A %s" % (i, host_addr(i)))
    return "\n".join(z) + "\n"


class Unbound:
    """An Unbound instance of our own: `unbound -d -c FILE` in a fresh
    temporary directory, serving the example.test auth-zone (for-upstream,
    and for-downstream unless there is a slow authority), optionally delegating slow.example.test to a
    SlowAuthority through a stub-zone, with remote-control on a free port
    (no certificates) for `unbound-control stats_noreset`."""

    def __init__(self, whoami="local", slow=None, verbosity=1, extra_server_conf="",
                 name=None, for_downstream=None, log_queries=True):
        # With for-downstream the auth-zone answers clients directly (TTLs
        # stay 300: handy to see dnsveil's own TTL ageing) but it also
        # shadows the slow.example.test stub-zone; so by default it is on
        # only when there is no slow authority.
        if for_downstream is None:
            for_downstream = slow is None
        self.for_downstream = for_downstream
        self.whoami = whoami
        self.name = name or whoami
        self.slow = slow
        self.dir = tempfile.mkdtemp(prefix="dv-unbound-%s-" % self.name)
        self.port = free_port()
        self.control_port = free_port()
        self.conf = os.path.join(self.dir, "unbound.conf")
        self.zonefile = os.path.join(self.dir, "example.test.zone")
        self.log = os.path.join(self.dir, "unbound.stderr")
        self.proc = None
        with open(self.zonefile, "w") as f:
            f.write(zone_text(whoami))
        stub = ""
        if slow is not None:
            stub = ('stub-zone:\n  name: "%s"\n  stub-addr: 127.0.0.1@%d\n'
                    "  stub-prime: no\n" % (SLOW_ZONE, slow.port))
        conf = """server:
  do-daemonize: no
  use-syslog: no
  logfile: ""
  chroot: ""
  username: ""
  directory: "{dir}"
  pidfile: "{dir}/unbound.pid"
  interface: 127.0.0.1@{port}
  port: {port}
  so-reuseport: no
  do-ip6: no
  do-udp: yes
  do-tcp: yes
  num-threads: 1
  verbosity: {verbosity}
  module-config: "iterator"
  do-not-query-localhost: no
  # serve only our zones: everything else is REFUSED, and the root is a
  # stub on a dead loopback port, so this Unbound never sends a packet off
  # the machine (no root priming, no recursion to the Internet)
  local-zone: "test." nodefault
  local-zone: "." refuse
  local-zone: "example.test." transparent
  access-control: 127.0.0.0/8 allow
  # our test ports live in the kernel's ephemeral range: keep Unbound's
  # random outgoing ports away from ports just handed to other tests
  outgoing-port-avoid: 0-40000
  # the slow authority answers after ~1 s: do not retry it too early
  unknown-server-time-limit: 5000
  infra-cache-min-rtt: 3000
  tcp-idle-timeout: 30000
  incoming-num-tcp: 100
  statistics-interval: 0
  extended-statistics: no
  statistics-cumulative: no
  log-queries: {logq}
{extra}
remote-control:
  control-enable: yes
  control-use-cert: no
  control-interface: 127.0.0.1
  control-port: {cport}

auth-zone:
  name: "example.test"
  zonefile: "{zonefile}"
  for-downstream: {down}
  for-upstream: yes
  fallback-enabled: no

stub-zone:
  name: "."
  stub-addr: 127.0.0.1@9
  stub-prime: no

{stub}""".format(dir=self.dir, port=self.port, verbosity=verbosity, cport=self.control_port,
                 zonefile=self.zonefile, stub=stub, extra=extra_server_conf,
                 down="yes" if for_downstream else "no",
                 logq="yes" if log_queries else "no")
        with open(self.conf, "w") as f:
            f.write(conf)

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def url(self, scheme="tcp"):
        return "%s://127.0.0.1:%d" % (scheme, self.port)

    def start(self, timeout=15.0):
        if _pid_alive(self.proc):
            raise RuntimeError("unbound %s already running" % self.name)
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf, cwd=self.dir)
        logf.close()

        def ready():
            if not _pid_alive(self.proc):
                raise AssertionError("unbound %s exited (%s):\n%s" % (
                    self.name, self.proc.returncode, tail(self.log)))
            r = udp_query(self.port, "www.example.test", timeout=0.3)
            return r.rcode() == dns.rcode.NOERROR
        try:
            wait_for(ready, timeout, interval=0.05, what="unbound %s on %s" % (self.name, self.addr))
        except AssertionError:
            self.kill()
            raise
        return self

    def alive(self):
        return _pid_alive(self.proc)

    def stop(self):
        _terminate(self.proc, signal.SIGTERM, 5.0)

    def kill(self):
        _terminate(self.proc, signal.SIGKILL, 5.0)

    def restart(self, timeout=15.0):
        self.stop()
        return self.start(timeout)

    def control(self, *args):
        r = subprocess.run([UNBOUND_CONTROL, "-c", self.conf] + list(args),
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise AssertionError("unbound-control %s failed: %s %s" % (
                " ".join(args), r.stdout, r.stderr))
        return r.stdout

    def stats(self):
        out = {}
        for line in self.control("stats_noreset").splitlines():
            k, _, v = line.partition("=")
            try:
                out[k.strip()] = float(v) if "." in v else int(v)
            except ValueError:
                pass
        return out

    def num_queries(self):
        """Queries this Unbound received from clients (total.num.queries)."""
        return int(self.stats()["total.num.queries"])

    def queries_for(self, name, rdtype=None):
        """How many queries for `name` (case-insensitive; and `rdtype`) this
        Unbound logged (log-queries: yes)."""
        name = name.lower().rstrip(".") + "."
        n = 0
        for line in tail(self.log, 10 ** 9).splitlines():
            m = re.search(r" info: \S+ (\S+) (\S+) (\S+)$", line)
            if m and m.group(1).lower() == name and (rdtype is None or m.group(2) == rdtype):
                n += 1
        return n

    def cleanup(self, keep=False):
        self.kill()
        if not keep and not KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- dnsveil

def dnsveil_binary():
    path = os.environ.get("DNSVEIL", "")
    if not path:
        raise AssertionError("DNSVEIL is not set: run through ctest, or export "
                             "DNSVEIL=/path/to/build/dnsveil")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise AssertionError("DNSVEIL=%s is not an executable file (build it first)" % path)
    return path


def run_dnsveil(args, timeout=None, input=None):
    """Run the binary to completion (for CLI tests).  Returns
    CompletedProcess with text stdout/stderr; a hang fails the test."""
    cmd = [dnsveil_binary()] + list(args)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=timeout or scaled(10), input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("`%s` did not exit within %ss" % (" ".join(cmd), e.timeout))


def sanitizer_reports(text):
    return [line for line in text.splitlines()
            if any(p in line for p in SANITIZER_PATTERNS)]


def yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML scalar


def to_yaml(cfg):
    """Render a dict of scalars / lists of scalars / one-level dicts as YAML
    (flow style for lists and maps, like the documented example)."""
    lines = []
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines.append("%s: { %s }" % (k, ", ".join(
                "%s: %s" % (kk, yaml_scalar(vv)) for kk, vv in v.items())))
        elif isinstance(v, (list, tuple)):
            lines.append("%s: [%s]" % (k, ", ".join(yaml_scalar(x) for x in v)))
        else:
            lines.append("%s: %s" % (k, yaml_scalar(v)))
    return "\n".join(lines) + "\n"


class Dnsveil:
    """The binary under test.

    Dnsveil(upstream=[unbound], fallback=[...], config={...}) writes the
    config as YAML (`listen`, `upstream`, `fallback` given here go into the
    file too, unless flags=True puts them on the command line), starts the
    binary with stderr to a file, and waits until it answers."""

    def __init__(self, upstream=(), fallback=(), config=None, listen=None, workers=None,
                 extra_args=(), flags=False, ipv6=False, name="dnsveil", port=None,
                 raw_args=None):
        self.bin = dnsveil_binary()
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="dv-%s-" % name)
        self.port = port or free_port(ipv6=ipv6)
        self.host = "127.0.0.1"
        self.stderr_path = os.path.join(self.dir, "dnsveil.stderr")
        self.conf_path = os.path.join(self.dir, "dnsveil.yaml")
        self.proc = None
        self.returncode = None
        self.killed = False
        self._stats_seen = 0

        def url(u, scheme="tcp"):
            return u if isinstance(u, str) else u.url(scheme)
        if listen is None:
            listen = ["dns://127.0.0.1:%d" % self.port]
            if ipv6:
                listen.append("dns://[::1]:%d" % self.port)
        else:
            listen = [x.format(port=self.port) for x in listen]
        self.listen = listen
        self.has_udp = any(x.startswith(("udp://", "dns://")) for x in listen)
        self.upstream = [url(u) for u in upstream]
        self.fallback = [url(u) for u in fallback]
        cfg = {}
        if workers is not None:
            cfg["workers"] = workers
        elif "workers" not in (config or {}):
            cfg["workers"] = 2
        args = []
        if flags:
            for x in listen:
                args += ["--listen", x]
            for x in self.upstream:
                args += ["--upstream", x]
            for x in self.fallback:
                args += ["--fallback", x]
            if not self.fallback:
                # the built-in default fallbacks are public resolvers
                cfg["fallback"] = []
        else:
            # always written, even empty: the built-in defaults name public
            # resolvers, and no test may send a packet off the machine
            cfg["listen"] = listen
            cfg["upstream"] = self.upstream
            cfg["fallback"] = self.fallback
        for k, v in (config or {}).items():
            cfg[k] = v
        with open(self.conf_path, "w") as f:
            f.write(to_yaml(cfg))
        self.args = ["-c", self.conf_path] + args + list(extra_args)
        if raw_args is not None:
            # the caller's exact command line (must keep traffic on loopback)
            self.args = list(raw_args)

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=None):
        timeout = timeout or scaled(15)
        errf = open(self.stderr_path, "ab")
        env = dict(os.environ)
        if SANITIZE:
            env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
            # ASan keeps freed memory in a quarantine (256 MB by default),
            # which would read as RSS growth in the memory-bound tests
            if "quarantine_size_mb" not in env["ASAN_OPTIONS"]:
                env["ASAN_OPTIONS"] += ":quarantine_size_mb=8"
        self.proc = subprocess.Popen([self.bin] + self.args, stdin=subprocess.DEVNULL,
                                     stdout=errf, stderr=errf, cwd=self.dir, env=env)
        errf.close()
        log("started dnsveil pid %d: %s" % (self.proc.pid, " ".join([self.bin] + self.args)))
        try:
            wait_for(self._answers, timeout, interval=0.1,
                     what="dnsveil to answer on 127.0.0.1:%d" % self.port)
        except AssertionError as e:
            rc = self.proc.poll()
            self.kill()
            raise AssertionError("%s\nexit code: %s\nconfig:\n%s\nstderr:\n%s" % (
                e, rc, open(self.conf_path).read(), tail(self.stderr_path)))
        return self

    def _answers(self):
        if not _pid_alive(self.proc):
            raise AssertionError("dnsveil exited with %s before answering:\n%s" % (
                self.proc.returncode, tail(self.stderr_path)))
        q = make_query("example.test", "SOA")
        try:
            if self.has_udp:
                dns.query.udp(q, self.host, port=self.port, timeout=0.5)
            else:
                dns.query.tcp(q, self.host, port=self.port, timeout=0.5)
            return True
        except (dns.exception.Timeout, OSError, EOFError):
            return False

    def alive(self):
        return _pid_alive(self.proc)

    def stderr_text(self):
        try:
            with open(self.stderr_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stats(self, timeout=None):
        """Send SIGUSR1; return the JSON of the next `dnsveil-stats {...}`
        line written to stderr."""
        timeout = timeout or scaled(5)
        if not self.alive():
            raise AssertionError("dnsveil is not running (exit %s)" % self.proc.returncode)
        before = self._stats_lines()
        self.proc.send_signal(signal.SIGUSR1)

        def new_line():
            lines = self._stats_lines()
            return lines[len(before):] if len(lines) > len(before) else None
        lines = wait_for(new_line, timeout, interval=0.05,
                         what="a new 'dnsveil-stats {JSON}' line on stderr after SIGUSR1")
        try:
            st = json.loads(lines[-1])
        except ValueError as e:
            raise AssertionError("stats line is not JSON: %r (%s)" % (lines[-1], e))
        self._stats_seen = len(before) + len(lines)
        return st

    def _stats_lines(self):
        out = []
        for line in self.stderr_text().splitlines():
            i = line.find("dnsveil-stats ")
            if i >= 0:
                rest = line[i + len("dnsveil-stats "):].strip()
                if rest.startswith("{") and rest.endswith("}"):
                    out.append(rest)
        return out

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS for pid %d" % self.proc.pid)

    def stop(self, timeout=None):
        """SIGTERM; the process must exit 0 (after draining) within the
        timeout.  Returns the exit code."""
        timeout = timeout or scaled(10)
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            raise AssertionError("dnsveil had already exited with %s:\n%s" % (
                self.returncode, tail(self.stderr_path)))
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("dnsveil did not exit within %.0fs of SIGTERM:\n%s" % (
                timeout, tail(self.stderr_path)))
        if self.returncode != 0:
            raise AssertionError("dnsveil exited with %s after SIGTERM (expected 0):\n%s" % (
                self.returncode, tail(self.stderr_path)))
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.killed = True
            self.proc.kill()
            self.proc.wait(timeout=10)

    def check_sanitizers(self):
        reports = sanitizer_reports(self.stderr_text())
        if reports:
            raise AssertionError("sanitizer report in dnsveil stderr (%s):\n%s" % (
                self.stderr_path, tail(self.stderr_path, 80)))

    def cleanup(self, keep=False):
        self.kill()
        if not keep and not KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- clients

class KdigResult:
    def __init__(self, cmd, rc, stdout, stderr):
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.json = None
        self.messages = []
        # kdig may print several JSON objects (e.g. +keepopen several
        # questions); keep all of them
        dec = json.JSONDecoder()
        i = 0
        s = stdout
        while True:
            j = s.find("{", i)
            if j < 0:
                break
            try:
                obj, end = dec.raw_decode(s, j)
            except ValueError:
                i = j + 1
                continue
            self.messages.append(obj)
            i = end
        # a timeout prints an empty object
        self.messages = [m for m in self.messages if "ID" in m]
        if self.messages:
            self.json = self.messages[-1]

    def __repr__(self):
        return "<kdig rc=%s %s>\n%s%s" % (self.rc, " ".join(self.cmd), self.stdout, self.stderr)

    def _get(self, key, default=None):
        if self.json is None:
            raise AssertionError("kdig gave no answer: %r" % self)
        return self.json.get(key, default)

    @property
    def rcode(self):
        return self._get("RCODE")

    @property
    def status(self):
        return dns.rcode.to_text(self._get("RCODE"))

    @property
    def tc(self):
        return bool(self._get("TC"))

    @property
    def aa(self):
        return bool(self._get("AA"))

    @property
    def qname(self):
        return self._get("QNAME")

    @property
    def size(self):
        return self._get("msgLength")

    @property
    def id(self):
        return self._get("ID")

    def section(self, name):
        """Records of 'answer', 'authority' or 'additional' as dicts."""
        return self._get(name + "RRs", []) or []

    def records(self, name="answer"):
        """(owner, type, ttl, rdata text) tuples."""
        out = []
        for rr in self.section(name):
            rdata = None
            for k, v in rr.items():
                if k.startswith("rdata"):
                    rdata = v
            out.append((rr.get("NAME"), rr.get("TYPEname"), rr.get("TTL"), rdata))
        return out


def kdig(port, name, rdtype="A", *opts, server="127.0.0.1", timeout=None, tcp=False):
    """Run kdig as a client against server:port.  Returns a KdigResult
    (JSON output, RFC 8427 style: RCODE, TC, answerRRs ...)."""
    t = max(1, int(round(timeout or scaled(3))))
    cmd = [KDIG, "@" + server, "-p", str(port), name, rdtype, "+json",
           "+retry=0", "+timeout=%d" % t]
    if tcp:
        cmd.append("+tcp")
    cmd += list(opts)
    r = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                       timeout=t * 4 + 10)
    return KdigResult(cmd, r.returncode, r.stdout, r.stderr)


def dnsperf(port, datafile, *opts, server="127.0.0.1", timeout=120):
    """Run dnsperf; returns (dict of parsed numbers, full output)."""
    cmd = [DNSPERF, "-s", server, "-p", str(port), "-d", datafile] + list(opts)
    log("running: " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout)
    out = r.stdout + r.stderr
    res = {"rc": r.returncode}
    pats = {
        "sent": r"Queries sent:\s+(\d+)",
        "completed": r"Queries completed:\s+(\d+)",
        "lost": r"Queries lost:\s+(\d+)",
        "interrupted": r"Queries interrupted:\s+(\d+)",
        "qps": r"Queries per second:\s+([\d.]+)",
        "avg_latency": r"Average Latency \(s\):\s+([\d.]+)",
        "noerror": r"NOERROR\s+(\d+)",
        "servfail": r"SERVFAIL\s+(\d+)",
    }
    for k, p in pats.items():
        m = re.search(p, out)
        if m:
            res[k] = float(m.group(1)) if "." in m.group(1) else int(m.group(1))
    return res, out


# ---------------------------------------------------------------- test base

def base_config(**sections):
    """The tunables most tests use; keyword arguments replace or extend
    sections, e.g. base_config(pool={"hedge-delay-ms": 100})."""
    cfg = {
        "pool": {"hedge-delay-ms": 200, "query-timeout-ms": 3000, "timeout-ms": 1500,
                 "connections": 2},
        "cache": {"size": "64M", "max-ttl": 86400},
        "limits": {"tcp-idle-timeout-ms": 10000, "tcp-max-inflight": 128},
    }
    for k, v in sections.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = dict(cfg[k], **v)
        else:
            cfg[k] = v
    return cfg


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

    def start_slow(self, delay=1.0, address="192.0.2.200"):
        s = SlowAuthority(delay=delay, address=address)
        self._slows.append(s)
        return s.start()

    def start_unbound(self, whoami="local", slow=None, **kw):
        u = Unbound(whoami=whoami, slow=slow, **kw)
        self._unbounds.append(u)
        return u.start()

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


def main():
    unittest.main(verbosity=2)


# ---------------------------------------------------------------- self-test

def selftest():
    """Check the Unbound, SlowAuthority, kdig and dnsperf parts of the
    harness against Unbound directly (no dnsveil needed)."""
    failures = []

    def check(cond, what):
        log(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures.append(what)

    slow = SlowAuthority(delay=1.0).start()
    ub = Unbound(whoami="local", for_downstream=True).start()
    us = Unbound(whoami="slowtest", slow=slow).start()
    fb = Unbound(whoami="fallback").start()
    try:
        p = ub.port
        r = kdig(p, "www.example.test", "A")
        check(r.rcode == 0 and ("www.example.test.", "A", 300, "192.0.2.1") in r.records(),
              "kdig A www.example.test: %s" % r.records())
        r = kdig(p, "www.example.test", "AAAA", tcp=True)
        check(r.rcode == 0 and r.records()[0][3] == "2001:db8::1", "kdig +tcp AAAA: %s" % r.records())
        r = kdig(p, "alias.example.test", "A")
        check([x[1] for x in r.records()] == ["CNAME", "CNAME", "A"], "CNAME chain: %s" % r.records())
        r = kdig(p, "nope.example.test", "A")
        check(r.status == "NXDOMAIN" and r.records("authority")[0][1] == "SOA",
              "NXDOMAIN with SOA: %s %s" % (r.status, r.records("authority")))
        r = kdig(p, "big.example.test", "TXT", "+ignore")
        check(r.tc, "big TXT truncated over UDP without EDNS (size %s)" % r.size)
        r = kdig(p, "big.example.test", "TXT", tcp=True)
        check(not r.tc and r.size > 3000, "big TXT over TCP: %s bytes" % r.size)
        # (kdig lowercases the names it sends: case tests use dnspython)
        m = udp_query(p, "WwW.Example.TEST")
        check(m.question[0].name.to_text() == "WwW.Example.TEST.",
              "unbound keeps case: %s" % m.question[0].name)
        m = udp_query(p, "x.whoami.example.test", "TXT")
        check(txt_value(m) == "local", "whoami local: %s" % txt_value(m))
        m = udp_query(fb.port, "x.whoami.example.test", "TXT")
        check(txt_value(m) == "fallback", "whoami fallback: %s" % txt_value(m))
        n0 = ub.num_queries()
        udp_query(p, "h7.example.test")
        check(ub.num_queries() == n0 + 1, "unbound-control total.num.queries %d -> %d" % (
            n0, ub.num_queries()))
        # slow name through the stub-zone
        t0 = time.monotonic()
        m = udp_query(us.port, unique_label("x") + ".slow.example.test", timeout=5)
        dt = time.monotonic() - t0
        check(m.rcode() == 0 and rrset_texts(m) and rrset_texts(m)[0][3] == "192.0.2.200"
              and 0.9 <= dt < 2.5, "slow name answered in %.2fs: %s" % (dt, rrset_texts(m)))
        # Unbound answers pipelined TCP queries out of order
        s = socket.create_connection(("127.0.0.1", us.port), timeout=5)
        q1 = make_query(unique_label("x") + ".slow.example.test", qid=1111)
        q2 = make_query("www.example.test", qid=2222)
        s.sendall(struct.pack("!H", len(q1.to_wire())) + q1.to_wire()
                  + struct.pack("!H", len(q2.to_wire())) + q2.to_wire())
        first = dns.message.from_wire(tcp_recv_msg(s))
        second = dns.message.from_wire(tcp_recv_msg(s))
        s.close()
        check(first.id == 2222 and second.id == 1111,
              "unbound answers pipelined TCP out of order (%d then %d)" % (first.id, second.id))
        # kill and restart keep the port
        ub.kill()
        check(not ub.alive(), "unbound killed")
        ub.start()
        check(udp_query(p, "www.example.test").rcode() == 0, "unbound restarted on same port")
        # dnsperf against Unbound directly
        d = tempfile.mkdtemp(prefix="dv-selftest-")
        qf = os.path.join(d, "queries.txt")
        with open(qf, "w") as f:
            for i in range(NUM_HOSTS):
                f.write("h%d.example.test A\n" % i)
        res, out = dnsperf(p, qf, "-c", "4", "-l", "3", "-Q", "2000")
        check(res.get("lost") == 0 and res.get("completed", 0) > 1000,
              "dnsperf udp against unbound: %s" % res)
        res, out = dnsperf(p, qf, "-m", "tcp", "-c", "4", "-l", "2", "-Q", "1000")
        check(res.get("lost") == 0 and res.get("completed", 0) > 500,
              "dnsperf tcp against unbound: %s" % res)
        shutil.rmtree(d, ignore_errors=True)
        check(slow.count >= 2, "slow authority saw %d queries" % slow.count)
    finally:
        ub.cleanup()
        us.cleanup()
        fb.cleanup()
        slow.stop()
    log("selftest: %d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "selftest":
        sys.exit(selftest())
    print(__doc__)
