"""dnsveil itself: the binary, its configuration (as YAML, with the
tunables most tests use), and the one Dnsveil class that starts it and knows
when each of its listeners serves; dnsveil-doq, the project's DoQ client."""

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile

import dns.exception
import dns.query

from .env import (KEEP_TMP, SANITIZE, SANITIZER_PATTERNS, free_port, log, pid_alive, read_text,
                  scaled, tail, wait_for)
from .wire import make_query, recv_msg, send_msg, udp_raw
from .tls import AUTH_NAME, CA, CERT, KEY, tcp_connect, tls_connect
from .doh import PATH, get_request, http1_request


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


# ---------------------------------------------------------------- configuration

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


def dot_config(cert=CERT, key=KEY, limits=None, tls=None, **sections):
    """base_config() plus the tls section (what TLS, HTTPS and QUIC
    listeners need)."""
    cfg = base_config(**sections)
    if limits:
        cfg["limits"] = dict(cfg["limits"], **limits)
    t = {"cert": cert, "key": key}
    t.update(tls or {})
    cfg["tls"] = t
    return cfg


def doh_config(limits=None, **sections):
    """dot_config() plus the limits the DoH tests use: a 1 s read timeout
    (a started request must complete), a 4 s idle timeout, and no
    per-address handshake cap (curl makes one connection per run)."""
    return dot_config(limits=dict({"tcp-read-timeout-ms": 1000,
                                   "tcp-idle-timeout-ms": 4000,
                                   "tls-handshakes-per-ip": 0}, **(limits or {})),
                      **sections)


def doq_config(doq=None, limits=None):
    """dot_config() with a doq section."""
    cfg = dot_config(limits=limits)
    if doq:
        cfg["doq"] = doq
    return cfg


def pool_config(**pool):
    """base_config() with a pool that reconnects fast (50 ms to 1 s unless
    told), for the tests that kill and restart upstreams."""
    p = {"hedge-delay-ms": 200, "query-timeout-ms": 3000, "timeout-ms": 1500,
         "connections": 2, "reconnect-min-ms": 50, "reconnect-max-ms": 1000}
    p.update(pool)
    return base_config(pool=p)


def upstream_stats(st, url):
    """The entry of `url` in a stats line's upstreams array."""
    for u in st.get("upstreams", []):
        if u["url"] == url:
            return u
    raise AssertionError("no upstream %s in the stats line: %s" % (url, st.get("upstreams")))


def check_config_text(text, files=None):
    """`dnsveil --check-config` on a minimal configuration (a UDP listener,
    one tcp:// upstream, no fallback) followed by `text` (YAML; "@DIR@" is
    the temporary folder, where `files`, {name: content}, are written).
    Returns (exit status, stdout + stderr with the file's path as FILE)."""
    d = tempfile.mkdtemp(prefix="dv-check-config-")
    try:
        p = os.path.join(d, "c.yaml")
        for name, content in (files or {}).items():
            with open(os.path.join(d, name), "w") as f:
                f.write(content)
        with open(p, "w") as f:
            f.write(to_yaml({"listen": ["udp://127.0.0.1:1"],
                             "upstream": ["tcp://127.0.0.1:2"], "fallback": []}))
            f.write(text.replace("@DIR@", d))
        r = run_dnsveil(["--check-config", "-c", p])
        return r.returncode, (r.stdout + r.stderr).replace(p, "FILE")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def check_config_key(snippet):
    """Does `dnsveil --check-config` accept a configuration with an https
    listener plus `snippet` (YAML)?  Returns ("ok", out), ("unknown", out)
    when it says the key is unknown, or ("rejected", out) otherwise."""
    d = tempfile.mkdtemp(prefix="dv-doh-checkcfg-")
    try:
        p = os.path.join(d, "c.yaml")
        with open(p, "w") as f:
            f.write(to_yaml({"listen": ["https://127.0.0.1:1/dns-query"],
                             "upstream": ["tcp://127.0.0.1:2"], "fallback": [],
                             "tls": {"cert": CERT, "key": KEY}}))
            f.write(snippet.rstrip("\n") + "\n")
        r = run_dnsveil(["--check-config", "-c", p])
        out = (r.stdout + r.stderr).strip()
        if r.returncode == 0:
            return "ok", out
        if re.search(r"unknown key", out):
            return "unknown", out
        return "rejected", out
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- dnsveil-doq

def doq_binary():
    """dnsveil-doq built next to $DNSVEIL (or $DV_DOQ_CLIENT)."""
    if os.environ.get("DV_DOQ_CLIENT"):
        return os.environ["DV_DOQ_CLIENT"]
    d = os.path.dirname(dnsveil_binary())
    p = os.path.join(d, "dnsveil-doq")
    if not os.path.isfile(p):
        raise AssertionError("%s missing (built next to dnsveil)" % p)
    return p


class Doq:
    """One run of dnsveil-doq --json; .lines (dicts), .summary, .conns."""

    def __init__(self, port, args, names=("www.example.test", "A"), timeout=None, trust=True,
                 host="127.0.0.1"):
        cmd = [doq_binary(), "--json"]
        if trust:
            cmd += ["--name", AUTH_NAME, "--ca", CA]
        cmd += list(args)
        target = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
        cmd += [target] + list(names)
        self.cmd = cmd
        r = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=timeout or scaled(60))
        self.rc = r.returncode
        self.stderr = r.stderr
        self.lines = []
        for line in r.stdout.splitlines():
            line = line.strip()
            if line.startswith("{"):
                self.lines.append(json.loads(line))
        self.summary = next((x for x in self.lines if x["type"] == "summary"), None)
        self.conns = [x for x in self.lines if x["type"] == "connection"]
        self.answers = [x for x in self.lines if x["type"] == "answer"]
        self.errors = [x for x in self.lines if x["type"] == "error"]
        if self.summary is None:
            raise AssertionError("dnsveil-doq printed no summary (exit %d): %s\n%s" % (
                self.rc, " ".join(cmd), r.stderr[-2000:]))

    def close(self):
        return self.conns[0]["close"] if self.conns else None

    def __repr__(self):
        return "dnsveil-doq exit %d summary %s errors %s close %s" % (
            self.rc, self.summary, self.errors[:3], self.close())


# ---------------------------------------------------------------- dnsveil

class Dnsveil:
    """The binary under test, with one configuration and its listeners.

    Dnsveil(upstream=[unbound], fallback=[...], config={...}, listen=[...])
    writes the config as YAML (`listen`, `upstream`, `fallback` go into the
    file too, unless flags=True puts them on the command line), starts the
    binary with stderr to a file, and waits until every listener on
    127.0.0.1 serves (see READY).

    `listen` entries are URLs ("{port}" stands for `.port`, the main port)
    or bare scheme names, for which a port is chosen: "dns", "udp", "tcp"
    (on `.port`), "tls", "https", "http", "quic" (their own ports, in
    `.ports[scheme]` and `.tls_port`, `.https_port`, `.http_port`,
    `.quic_port`; https and http serve `path`).  The default is
    ["dns"] (and dns://[::1] on the same port when ipv6=True).  With
    ipv6=True a bare "quic" also listens on [::1].  `extra_yaml` is
    appended to the generated configuration verbatim (for keys to_yaml
    cannot render, e.g. lists inside a section)."""

    #: how each listener scheme shows that it serves: a query over it
    #: answered (for TLS and QUIC that means a finished handshake too)
    READY = {
        "dns": "a DNS query over UDP answered",
        "udp": "a DNS query over UDP answered",
        "tcp": "a DNS query over TCP answered",
        "tls": "a TLS handshake (test CA, dns.test, ALPN dot) and a query answered",
        "https": "a DoH GET over TLS answered 200",
        "http": "a DoH GET over cleartext HTTP/1.1 answered 200",
        "quic": "a DoQ query (dnsveil-doq, test CA, dns.test) answered",
    }

    def __init__(self, upstream=(), fallback=(), config=None, listen=None, workers=None,
                 extra_args=(), flags=False, ipv6=False, name="dnsveil", port=None,
                 raw_args=None, extra_yaml="", path=PATH, quic_port=None, ready=True,
                 env=None, host="127.0.0.1", wrapper=()):
        self.bin = dnsveil_binary()
        self.extra_env = dict(env or {})  # set in the process's environment
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="dv-%s-" % name)
        self.port = port or free_port(ipv6=ipv6)
        self.host = host  # where start() asks its readiness query
        self.wrapper = list(wrapper)  # e.g. setpriv ... before the binary
        self.path = path
        self.stderr_path = os.path.join(self.dir, "dnsveil.stderr")
        self.conf_path = os.path.join(self.dir, "dnsveil.yaml")
        self.proc = None
        self.returncode = None
        self.killed = False
        self.check_ready = ready
        self._stats_seen = 0
        self.ports = {}

        def url(u, scheme="tcp"):
            return u if isinstance(u, str) else u.url(scheme)
        if listen is None:
            listen = ["dns"] + (["dns://[::1]:{port}"] if ipv6 else [])
        urls = []
        for x in listen:
            if x in ("dns", "udp", "tcp"):
                urls.append("%s://127.0.0.1:{port}" % x)
            elif x in ("tls", "https", "http", "quic"):
                if x not in self.ports:
                    if x == "quic" and quic_port:
                        self.ports[x] = quic_port
                    else:
                        self.ports[x] = free_port(ipv6=ipv6 and x == "quic")
                p = self.ports[x]
                if x in ("https", "http"):
                    urls.append("%s://127.0.0.1:%d%s" % (x, p, path))
                else:
                    urls.append("%s://127.0.0.1:%d" % (x, p))
                if x == "quic" and ipv6:
                    urls.append("quic://[::1]:%d" % p)
            else:
                urls.append(x)
        listen = [x.format(port=self.port) for x in urls]
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
        if "drain" not in cfg and not re.search(r"(?m)^drain:", extra_yaml):
            # stop at once on SIGTERM (the default keeps serving 5 s for
            # load balancers); test_drain sets its own
            cfg["drain"] = {"delay-ms": 0}
        with open(self.conf_path, "w") as f:
            f.write(to_yaml(cfg))
            if extra_yaml:
                f.write(extra_yaml.rstrip("\n") + "\n")
        self.args = ["-c", self.conf_path] + args + list(extra_args)
        if raw_args is not None:
            # the caller's exact command line (must keep traffic on loopback)
            self.args = list(raw_args)

    @property
    def tls_port(self):
        return self.ports["tls"]

    @property
    def https_port(self):
        return self.ports["https"]

    @property
    def http_port(self):
        return self.ports["http"]

    @property
    def quic_port(self):
        return self.ports["quic"]

    def url(self, tls=True, path=None):
        """The DoH URL of the https (tls=True) or http listener."""
        return "%s://127.0.0.1:%d%s" % ("https" if tls else "http",
                                        self.https_port if tls else self.http_port,
                                        path or self.path)

    def doq(self, *args, **kw):
        """dnsveil-doq against the quic listener (a Doq result)."""
        return Doq(self.quic_port, args, **kw)

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=None):
        """Start the process and wait until every listener on 127.0.0.1
        serves (unless ready=False was given)."""
        timeout = timeout or scaled(15)
        errf = open(self.stderr_path, "ab")
        env = dict(os.environ)
        env.update(self.extra_env)
        if SANITIZE:
            env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
            env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
            # ASan keeps freed memory in a quarantine (256 MB by default),
            # which would read as RSS growth in the memory-bound tests
            if "quarantine_size_mb" not in env["ASAN_OPTIONS"]:
                env["ASAN_OPTIONS"] += ":quarantine_size_mb=8"
        self.proc = subprocess.Popen(self.wrapper + [self.bin] + self.args,
                                     stdin=subprocess.DEVNULL,
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
                e, rc, read_text(self.conf_path), tail(self.stderr_path)))
        if self.check_ready:
            self.wait_listeners()
        return self

    def listeners(self):
        """(scheme, port, path) of every listener on 127.0.0.1."""
        out = []
        for u in self.listen:
            m = re.match(r"([a-z0-9]+)://127\.0\.0\.1:(\d+)(/\S*)?$", u)
            # a ?proxy-protocol listener serves only behind a load balancer
            if m and not u.endswith("?proxy-protocol"):
                out.append((m.group(1), int(m.group(2)), m.group(3) or PATH))
        return out

    def wait_listeners(self, timeout=None):
        """Wait until every listener on 127.0.0.1 serves (READY).  The main
        port was waited for by start(); this waits for the others (and the
        main port's other transport)."""
        for scheme, port, path in self.listeners():
            if scheme not in self.READY:
                continue
            try:
                wait_for(lambda: self.serves(scheme, port, path), timeout or scaled(10),
                         interval=0.1, what="%s on 127.0.0.1:%d: %s" % (
                             scheme, port, self.READY[scheme]))
            except AssertionError as e:
                raise AssertionError("%s\nstderr:\n%s" % (e, tail(self.stderr_path)))

    def serves(self, scheme, port, path=PATH):
        """Does the `scheme` listener on 127.0.0.1:`port` serve now?  A
        query over it must be answered: for tls, that also makes dnsveil
        finish (and count) the handshake before the test goes on (a TLS 1.3
        client is done one flight before the server is)."""
        if not pid_alive(self.proc):
            raise AssertionError("dnsveil exited with %s:\n%s" % (
                self.proc.returncode, tail(self.stderr_path)))
        wire = make_query("example.test", "SOA").to_wire()
        try:
            if scheme in ("dns", "udp"):
                return udp_raw(port, wire, timeout=0.5) is not None
            if scheme in ("tcp", "tls"):
                s = (tls_connect if scheme == "tls" else tcp_connect)(port, timeout=1.0)
                try:
                    send_msg(s, wire)
                    return len(recv_msg(s)) >= 12
                finally:
                    s.close()
            if scheme in ("https", "http"):
                st, _, _ = http1_request(port, scheme == "https",
                                         get_request(wire, path=path), timeout=1.0)
                return st == 200
            if scheme == "quic":
                r = Doq(port, ["--timeout", "1"], names=("example.test", "SOA"),
                        timeout=scaled(10))
                return r.rc == 0 and len(r.answers) == 1
        except (OSError, ConnectionError, ssl.SSLError):
            return False
        raise ValueError("no readiness check for %s" % scheme)

    def _answers(self):
        if not pid_alive(self.proc):
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

    def log_lines(self, pattern, start=0):
        """re.Match of every stderr line (after character offset `start`)
        in which `pattern` is found."""
        rx = re.compile(pattern)
        return [m for m in (rx.search(x) for x in self.stderr_text()[start:].splitlines())
                if m]

    def wait_log(self, pattern, timeout=None, start=0):
        """Wait for a regex in stderr (after character offset `start`)."""
        def found():
            return re.search(pattern, self.stderr_text()[start:])
        return wait_for(found, timeout or scaled(5), interval=0.05,
                        what="/%s/ in dnsveil's stderr" % pattern)

    def alive(self):
        return pid_alive(self.proc)

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
