"""The resolvers behind dnsveil, all on loopback: Unbound instances of our
own (never the system service) serving the example.test zone, optionally
over DoT or DoH too; a small Python authority for slow.example.test; a
delay line in front of a resolver; and the checks of "who answered"."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset

from .env import (KEEP_TMP, NUM_HOSTS, RESOLVER, SLOW_ZONE, UNBOUND, UNBOUND_CONTROL, ZONE, free_port,
                  log, pid_alive, scaled, tail, terminate, wait_for)
from .wire import (big_txt_strings, ede_codes, host_addr, make_query, recv_msg, send_msg,
                   tcp_query, txt_value, udp_query, unique_label)
from .tls import CERT, KEY, ensure_dev_certs
from .kresd import Kresd
from .resolver import IP, ResolverProcess

HERE = os.path.dirname(os.path.abspath(__file__))
DELAYLINE = os.path.join(HERE, "delayline.py")


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
                    wire = recv_msg(conn)
                except (OSError, ConnectionError):
                    return
                resp, delay = self.answer(wire)
                if resp is None:
                    continue

                def send(resp=resp):
                    with wlock:
                        try:
                            send_msg(conn, resp)
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


class Unbound(ResolverProcess):
    """An Unbound instance of our own: `unbound -d -c FILE` in a fresh
    temporary directory, serving the example.test auth-zone (for-upstream,
    and for-downstream unless there is a slow authority), optionally delegating slow.example.test to a
    SlowAuthority through a stub-zone, with remote-control on a free port
    (no certificates) for `unbound-control stats_noreset`."""

    kind = "unbound"

    def __init__(self, whoami="local", slow=None, verbosity=1, extra_server_conf="",
                 name=None, for_downstream=None, log_queries=True, local_data=(), netns=None):
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
        # run in that network namespace (its 127.0.0.1 is its own loopback)
        self.netns = netns
        self.dir = tempfile.mkdtemp(prefix="dv-unbound-%s-" % self.name)
        self.port = free_port()
        self.control_port = free_port()
        self.conf = os.path.join(self.dir, "unbound.conf")
        self.zonefile = os.path.join(self.dir, "example.test.zone")
        self.log = os.path.join(self.dir, "unbound.stderr")
        self.proc = None
        with open(self.zonefile, "w") as f:
            f.write(zone_text(whoami))
        # (name, ttl, type, rdata): answered with the full TTL every time
        extra_server_conf += "".join('  local-data: "%s. %d IN %s %s"\n' % (
            n.rstrip("."), ttl, t, rd) for n, ttl, t, rd in local_data)
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
        return self._launch([UNBOUND, "-d", "-c", self.conf], timeout)

    def control(self, *args):
        r = subprocess.run(self._prefix() + [UNBOUND_CONTROL, "-c", self.conf] + list(args),
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

    def https_queries(self):
        """Queries this Unbound received over DoH (extended-statistics)."""
        return int(self.stats().get("num.query.https", 0))

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


def encrypted_unbound(whoami, scheme):
    """An Unbound that also serves DoT (scheme "tls") or DoH over HTTP/2
    (scheme "https") on a port of its own, with certs/dev-cert.pem; the
    port is `.tls_port` or `.https_port`, and `.url(scheme, name)` the
    upstream URL verifying `name`."""
    ensure_dev_certs()
    port = free_port()
    if scheme == "tls":
        extra = "  interface: 127.0.0.1@{p}\n  tls-port: {p}\n"
    elif scheme == "https":
        extra = ("  interface: 127.0.0.1@{p}\n"
                 "  https-port: {p}\n"
                 "  http-endpoint: \"/dns-query\"\n"
                 "  http-max-streams: 100\n"
                 "  extended-statistics: yes\n")
    else:
        raise ValueError("no encrypted Unbound for %r" % scheme)
    extra += ("  tls-service-key: \"{key}\"\n"
              "  tls-service-pem: \"{cert}\"\n")
    u = Unbound(whoami=whoami, extra_server_conf=extra.format(p=port, key=KEY, cert=CERT),
                name="%s-%s" % (whoami, "dot" if scheme == "tls" else "doh"))
    setattr(u, scheme + "_port", port)
    return u


def resolver(whoami="local", slow=None, **kw):
    """The resolver DV_RESOLVER names (not started): an Unbound, or a Kresd
    (kresd.py) in front of an Unbound authority.  Both take `whoami`,
    `slow`, `name`, `local_data`, `netns`; anything else is for Unbound
    only (a Kresd refuses it)."""
    if RESOLVER == "kresd":
        return Kresd(whoami=whoami, slow=slow, **kw)
    return Unbound(whoami=whoami, slow=slow, **kw)


def encrypted_resolver(whoami, scheme):
    """encrypted_unbound(), or with DV_RESOLVER=kresd a Kresd serving DoT
    (kind 'tls') or DoH over HTTP/2 (kind 'doh2', path /dns-query) with
    certs/dev-cert.pem on `.tls_port` / `.https_port`."""
    if RESOLVER == "kresd":
        return Kresd(whoami=whoami, name="%s-%s" % (whoami, "dot" if scheme == "tls" else "doh"),
                     tls=scheme == "tls", https=scheme == "https")
    return encrypted_unbound(whoami, scheme)


class DelayLine:
    """delayline.py (beside this file) as a process of ours, optionally
    inside a network namespace: what the client sends reaches the target
    `delay_ms` later; fast() drops the delay."""

    def __init__(self, listen, lport, target, tport, delay_ms, netns=None):
        cmd = [sys.executable, DELAYLINE, listen, str(lport), target, str(tport),
               str(delay_ms)]
        if netns:
            cmd = [IP, "netns", "exec", netns] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise AssertionError("delayline did not start: %r" % line)

    def fast(self):
        self.proc.send_signal(signal.SIGUSR1)

    def stop(self):
        terminate(self.proc, signal.SIGTERM, 5.0)


CLIENT_TIMEOUT = scaled(5.0)


class DoqLimitServer:
    """doq-limit-server (tests/tools/doq_limit_server.c, built next to
    $DNSVEIL): a DoQ server from dnsveil's own server engine that forwards
    every query to `upstream` (an Unbound) over UDP and imposes knotd's
    stream limits: `max_unfinished` streams past the oldest unfinished one
    silence the connection (Knot DNS 3.4 drops it without a
    CONNECTION_CLOSE), and the stream credit never grows past
    `max_streams_total`.  It serves certs/dev-cert.pem (dns.test)."""

    def __init__(self, upstream, max_unfinished=10, max_streams=1024,
                 max_streams_total=1024, idle_timeout_ms=30000):
        from .daemon import dnsveil_binary  # noqa: late: daemon imports us
        self.binary = os.environ.get("DV_DOQ_LIMIT_SERVER") or os.path.join(
            os.path.dirname(dnsveil_binary()), "doq-limit-server")
        if not os.path.isfile(self.binary):
            raise AssertionError("%s missing (built next to dnsveil)" % self.binary)
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="dv-doqlimit-")
        self.out = os.path.join(self.dir, "stdout")
        ensure_dev_certs()
        self.args = [self.binary, "--listen", "127.0.0.1:%d" % self.port,
                     "--cert", CERT, "--key", KEY, "--upstream", upstream.addr,
                     "--max-unfinished", str(max_unfinished),
                     "--max-streams", str(max_streams),
                     "--max-streams-total", str(max_streams_total),
                     "--idle-timeout-ms", str(idle_timeout_ms)]
        self.proc = None

    def url(self, name="dns.test"):
        return "quic://127.0.0.1:%d#%s" % (self.port, name)

    def start(self):
        f = open(self.out, "ab")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=f,
                                     stderr=subprocess.STDOUT)
        f.close()
        wait_for(lambda: "ready" in open(self.out, errors="replace").read()
                 or not pid_alive(self.proc), scaled(10), what="doq-limit-server ready")
        if not pid_alive(self.proc):
            raise AssertionError("doq-limit-server exited:\n%s" % tail(self.out))
        log("doq-limit-server on 127.0.0.1:%d: %s" % (self.port, " ".join(self.args[7:])))
        return self

    def stats(self):
        """Its counters (SIGUSR1): connections, streams, silenced."""
        import json
        n = open(self.out, errors="replace").read().count("doq-limit-server-stats")
        self.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: open(self.out, errors="replace").read().count(
            "doq-limit-server-stats") > n, scaled(5), what="doq-limit-server stats")
        line = [x for x in open(self.out, errors="replace").read().splitlines()
                if x.startswith("doq-limit-server-stats")][-1]
        return json.loads(line.split(" ", 1)[1])

    def stop(self):
        terminate(self.proc, signal.SIGTERM, 5.0)

    def cleanup(self, keep=False):
        self.stop()
        if not keep and not KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)


class WhoamiChecks:
    """Mixin for IntegrationTest classes whose resolvers say who they are
    (`*.whoami.example.test TXT`)."""

    #: queries assert_whoami() sends when not told
    whoami_n = 4

    def whoami(self, d, tcp=False, timeout=CLIENT_TIMEOUT):
        """A fresh (uncacheable) whoami name asked of dnsveil `d`."""
        name = unique_label("w") + ".whoami.example.test"
        q = tcp_query if tcp else udp_query
        return q(d.port, name, "TXT", timeout=timeout)

    def whoami_timed(self, d, tcp=False, timeout=CLIENT_TIMEOUT):
        """whoami() and the seconds it took."""
        t0 = time.monotonic()
        m = self.whoami(d, tcp=tcp, timeout=timeout)
        return m, time.monotonic() - t0

    def assert_whoami(self, d, want="local", n=None, what=""):
        """`n` queries, UDP and TCP in turn, all answered NOERROR by `want`."""
        n = n or self.whoami_n
        for i in range(n):
            m = self.whoami(d, tcp=bool(i % 2))
            self.assertEqual(m.rcode(), dns.rcode.NOERROR, "%s: rcode %s" % (
                what, dns.rcode.to_text(m.rcode())))
            self.assertEqual(txt_value(m), want, "%s: answer from %r, expected %r" % (
                what, txt_value(m), want))
        log("ok: %d queries answered by %s %s" % (n, want, what))

    def assert_unverified_refused(self, d):
        """Through dnsveil `d` whose only upstream's certificate does not
        verify: with and without EDNS, an answer that is SERVFAIL, with an
        Extended DNS Error when the query had EDNS."""
        for edns in (0, None):
            q = make_query(unique_label("x") + ".whoami.example.test", "TXT", edns=edns)
            try:
                m = dns.query.udp(q, "127.0.0.1", port=d.port, timeout=scaled(10))
            except dns.exception.Timeout:
                self.fail("no answer with an upstream whose certificate does not verify")
            self.assertEqual(m.rcode(), dns.rcode.SERVFAIL,
                             "upstream with the wrong #NAME: %s" % dns.rcode.to_text(m.rcode()))
            if edns is not None:
                self.assertTrue(ede_codes(m), "SERVFAIL without an Extended DNS Error: %s"
                                % (m.options,))

    def burst(self, d, n):
        """`n` UDP queries for unique names sent at once from one socket;
        returns {qid: message} of the answers received."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.settimeout(CLIENT_TIMEOUT)
        want = {}
        try:
            for i in range(n):
                q = make_query(unique_label("b%d-" % i) + ".whoami.example.test", "TXT",
                               qid=i + 1)
                want[i + 1] = q
                s.sendto(q.to_wire(), ("127.0.0.1", d.port))
            got = {}
            deadline = time.monotonic() + scaled(10)
            while len(got) < n and time.monotonic() < deadline:
                try:
                    wire, _ = s.recvfrom(65535)
                except socket.timeout:
                    break
                m = dns.message.from_wire(wire)
                if m.id in want and want[m.id].question == m.question:
                    got[m.id] = m
            return got
        finally:
            s.close()
