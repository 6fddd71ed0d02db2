#!/usr/bin/python3
"""Helpers for the DNS-over-TLS integration tests (test_dot.py).

Builds on harness.py (which it imports and never changes): a dnsveil with a
DoT listener next to its plain dns:// one (the harness waits for the plain
port to answer), TLS client sockets trusting the test CA, raw RFC 7858
framing, kdig / openssl s_client / stubby runners, and a throw-away PKI made
with the openssl command line.  Everything stays on loopback.
"""

import os
import re
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time

import dns.message

import harness as h
from harness import log

CERTS_DIR = os.path.join(h.SOURCE_DIR, "certs")
CA = os.path.join(CERTS_DIR, "ca.pem")
CERT = os.path.join(CERTS_DIR, "dev-cert.pem")
KEY = os.path.join(CERTS_DIR, "dev-key.pem")
AUTH_NAME = "dns.test"

OPENSSL = shutil.which("openssl", path="/usr/bin:/bin") or "openssl"
STUBBY = shutil.which("stubby", path="/usr/bin:/usr/sbin:/bin:/sbin") or "stubby"


def ensure_dev_certs():
    """certs/ca.pem, dev-cert.pem, dev-key.pem (made by the repository's
    script when missing; it does nothing when they exist)."""
    if not (os.path.isfile(CERT) and os.path.isfile(KEY) and os.path.isfile(CA)):
        subprocess.run(["sh", os.path.join(CERTS_DIR, "make-dev-cert.sh")], check=True,
                       capture_output=True, timeout=60)
    for p in (CA, CERT, KEY):
        if not os.path.isfile(p):
            raise AssertionError("%s missing (sh certs/make-dev-cert.sh)" % p)


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
    keys = keys or [k for k in after if isinstance(after[k], int)]
    return {k: after[k] - before.get(k, 0) for k in keys}


# ---------------------------------------------------------------- dnsveil

def dot_config(cert=CERT, key=KEY, limits=None, tls=None, **sections):
    """harness.base_config() plus the tls section."""
    cfg = h.base_config(**sections)
    if limits:
        cfg["limits"] = dict(cfg["limits"], **limits)
    t = {"cert": cert, "key": key}
    t.update(tls or {})
    cfg["tls"] = t
    return cfg


class DotDnsveil(h.Dnsveil):
    """A Dnsveil listening on dns://127.0.0.1:{port} (what the harness
    polls for readiness) and tls://127.0.0.1:{tls_port}."""

    def __init__(self, upstream=(), config=None, **kw):
        self.tls_port = h.free_port()
        listen = ["dns://127.0.0.1:{port}", "tls://127.0.0.1:%d" % self.tls_port]
        super().__init__(upstream=upstream, config=config, listen=listen, **kw)

    def start(self, timeout=None):
        super().start(timeout)
        # the plain port answers: the TLS one must accept a handshake too

        def tls_ready():
            # a query, so that dnsveil has finished (and counted) the
            # handshake before we return: a TLS 1.3 client is done one
            # flight before the server is
            s = tls_connect(self.tls_port, timeout=1.0)
            try:
                send_msg(s, h.make_query("example.test", "SOA").to_wire())
                recv_msg(s)
            finally:
                s.close()
            return True
        try:
            h.wait_for(tls_ready, h.scaled(10), interval=0.1,
                       what="a TLS handshake on 127.0.0.1:%d" % self.tls_port)
        except AssertionError as e:
            raise AssertionError("%s\nstderr:\n%s" % (e, h.tail(self.stderr_path)))
        return self

    def wait_log(self, pattern, timeout=None, start=0):
        """Wait for a regex in stderr (after character offset `start`)."""
        def found():
            return re.search(pattern, self.stderr_text()[start:])
        return h.wait_for(found, timeout or h.scaled(5), interval=0.05,
                          what="/%s/ in dnsveil's stderr" % pattern)


# ---------------------------------------------------------------- TLS clients

def client_context(cafile=CA, alpn=("dot",), min_version=None, max_version=None):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


_default_ctx = None


def default_context():
    global _default_ctx
    if _default_ctx is None:
        _default_ctx = client_context()
    return _default_ctx


def tcp_connect(port, timeout=None, source=None, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            s.bind((source, 0))
        s.settimeout(timeout if timeout is not None else h.scaled(5))
        s.connect(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s
    except BaseException:
        s.close()
        raise


def tls_connect(port, timeout=None, ctx=None, server_hostname=AUTH_NAME, source=None,
                rcvbuf=None):
    """A verified TLS connection (test CA, name dns.test, ALPN dot)."""
    s = tcp_connect(port, timeout, source, rcvbuf)
    try:
        return (ctx or default_context()).wrap_socket(s, server_hostname=server_hostname)
    except BaseException:
        s.close()
        raise


def send_msg(sock, wire):
    sock.sendall(struct.pack("!H", len(wire)) + wire)


def recv_msg(sock):
    """One length-prefixed message (raw bytes)."""
    return h.tcp_recv_msg(sock)


def query(sock, msg):
    """Send a dnspython message on a DoT socket; return (raw, parsed)."""
    send_msg(sock, msg.to_wire())
    raw = recv_msg(sock)
    return raw, dns.message.from_wire(raw)


def a_records(msg):
    return [x[3] for x in h.rrset_texts(msg) if x[1] == "A"]


def wait_closed(sock, timeout):
    """Read until the peer closes (EOF, reset or TLS error).  Returns
    (seconds waited, how it ended, bytes read); 'timeout' when still open."""
    t0 = time.monotonic()
    got = b""
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return time.monotonic() - t0, "timeout", got
        sock.settimeout(left)
        try:
            d = sock.recv(4096)
        except socket.timeout:
            return time.monotonic() - t0, "timeout", got
        except ssl.SSLError as e:
            return time.monotonic() - t0, "tls error: %s" % e.__class__.__name__, got
        except ConnectionError as e:
            return time.monotonic() - t0, "reset: %s" % e.__class__.__name__, got
        if not d:
            return time.monotonic() - t0, "eof", got
        got += d


# ---------------------------------------------------------------- command-line clients

def kdig_tls(port, pairs, *opts, ca=CA, hostname=AUTH_NAME, timeout=None):
    """kdig over TLS verifying the test CA and name (kdig +tls alone
    verifies nothing).  `pairs`: [(name, type), ...]; options go before the
    names so that they apply to every query.  Returns a harness KdigResult
    (`.messages`: every answer printed)."""
    t = max(1, int(round(timeout or h.scaled(3))))
    cmd = [h.KDIG, "@127.0.0.1", "-p", str(port), "+tls"]
    if ca:
        cmd.append("+tls-ca=%s" % ca)
    if hostname:
        cmd.append("+tls-hostname=%s" % hostname)
    cmd += ["+json", "+retry=0", "+timeout=%d" % t] + list(opts)
    for name, rdtype in pairs:
        cmd += [name, rdtype]
    r = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                       timeout=t * 4 * max(1, len(pairs)) + 10)
    return h.KdigResult(cmd, r.returncode, r.stdout, r.stderr)


def kdig_answers(res):
    """[(qname, [A rdata...]), ...] of every answer kdig printed."""
    out = []
    for m in res.messages:
        out.append((m.get("QNAME"), [rr.get("rdataA") for rr in (m.get("answerRRs") or [])
                                      if rr.get("TYPEname") == "A"]))
    return out


def s_client(port, *args, stdin_bytes=b"", hold=0.0, timeout=None, servername=AUTH_NAME):
    """openssl s_client against 127.0.0.1:port.  `hold` seconds of an open
    stdin before EOF (so that TLS 1.3 NewSessionTickets sent after the
    handshake arrive).  Returns (returncode, stdout+stderr)."""
    cmd = [OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port]
    if servername:
        cmd += ["-servername", servername]
    cmd += list(args)
    timeout = timeout or h.scaled(15) + hold
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        if stdin_bytes:
            p.stdin.write(stdin_bytes)
            p.stdin.flush()
        if hold:
            time.sleep(hold)
        out, _ = p.communicate(timeout=timeout)  # closes stdin
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate(timeout=10)
        raise AssertionError("`%s` did not finish within %ss:\n%s" % (
            " ".join(cmd), timeout, out.decode(errors="replace")))
    except BrokenPipeError:
        out, _ = p.communicate(timeout=timeout)
    return p.returncode, out.decode(errors="replace")


def read_text(path):
    with open(path) as f:
        return f.read()


def pem_certs(text):
    return re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)


# ---------------------------------------------------------------- throw-away PKI

def _openssl(*args, cwd=None):
    r = subprocess.run([OPENSSL] + list(args), capture_output=True, text=True, cwd=cwd,
                       timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s failed:\n%s%s" % (" ".join(args), r.stdout, r.stderr))
    return r.stdout


def make_ca(d, name, cn):
    """EC P-256 CA: d/name.pem, d/name-key.pem.  Returns the cert path."""
    key = os.path.join(d, name + "-key.pem")
    crt = os.path.join(d, name + ".pem")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    _openssl("req", "-x509", "-new", "-sha256", "-days", "30", "-key", key,
             "-subj", "/O=dnsveil tests/CN=%s" % cn,
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", "-out", crt)
    return crt


def make_leaf(d, name, ca_name, cn="dns.test",
              sans="DNS:dns.test,DNS:localhost,IP:127.0.0.1,IP:::1"):
    """A leaf signed by d/ca_name: d/name-key.pem and d/name-chain.pem
    (leaf then CA).  Returns (chain path, key path)."""
    key = os.path.join(d, name + "-key.pem")
    csr = os.path.join(d, name + ".csr")
    ext = os.path.join(d, name + ".ext")
    leaf = os.path.join(d, name + ".pem")
    chain = os.path.join(d, name + "-chain.pem")
    ca = os.path.join(d, ca_name + ".pem")
    ca_key = os.path.join(d, ca_name + "-key.pem")
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    _openssl("req", "-new", "-sha256", "-key", key, "-subj", "/O=dnsveil tests/CN=%s" % cn,
             "-out", csr)
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=%s\n"
                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n" % sans)
    _openssl("x509", "-req", "-sha256", "-days", "30", "-in", csr, "-CA", ca, "-CAkey", ca_key,
             "-CAcreateserial", "-CAserial", os.path.join(d, ca_name + ".srl"),
             "-extfile", ext, "-out", leaf)
    _openssl("verify", "-CAfile", ca, leaf)
    with open(chain, "w") as f:
        f.write(read_text(leaf) + read_text(ca))
    return chain, key


# ---------------------------------------------------------------- stubby

class Stubby:
    """stubby (getdns) in the foreground with a config of our own in a
    temporary directory: TLS only, authentication required, the given CA,
    one upstream 127.0.0.1@tls_port named auth_name.  Killed by PID."""

    def __init__(self, tls_port, ca=CA, auth_name=AUTH_NAME):
        self.dir = tempfile.mkdtemp(prefix="dv-stubby-")
        self.port = h.free_port()
        self.conf = os.path.join(self.dir, "stubby.yml")
        self.log = os.path.join(self.dir, "stubby.log")
        self.proc = None
        with open(self.conf, "w") as f:
            f.write("""resolution_type: GETDNS_RESOLUTION_STUB
dns_transport_list:
  - GETDNS_TRANSPORT_TLS
tls_authentication: GETDNS_AUTHENTICATION_REQUIRED
tls_query_padding_blocksize: 128
edns_client_subnet_private: 1
round_robin_upstreams: 0
idle_timeout: 10000
appdata_dir: "{dir}"
tls_ca_file: "{ca}"
listen_addresses:
  - 127.0.0.1@{port}
upstream_recursive_servers:
  - address_data: 127.0.0.1
    tls_port: {tls_port}
    tls_auth_name: "{name}"
""".format(dir=self.dir, ca=ca, port=self.port, tls_port=tls_port, name=auth_name))

    def start(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([STUBBY, "-C", self.conf, "-l"], stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf, cwd=self.dir)
        logf.close()
        log("started stubby pid %d on 127.0.0.1:%d (%s)" % (self.proc.pid, self.port, self.conf))

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("stubby exited with %s:\n%s" % (
                    self.proc.returncode, self.log_text()))
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.settimeout(0.3)
                s.connect(("127.0.0.1", self.port))
                return True
            except OSError:
                return False
            finally:
                s.close()
        h.wait_for(listening, h.scaled(10), interval=0.1, what="stubby listening")
        return self

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, keep=False):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if not keep and not h.KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)
