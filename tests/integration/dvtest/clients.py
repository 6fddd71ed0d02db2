"""Real clients run as processes of ours: kdig (plain and over TLS),
dnsperf, openssl s_client and stubby."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import dns.rcode

from .env import DNSPERF, KDIG, KEEP_TMP, free_port, log, scaled, wait_for
from .tls import AUTH_NAME, CA, OPENSSL

STUBBY = shutil.which("stubby", path="/usr/bin:/usr/sbin:/bin:/sbin") or "stubby"


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


def kdig_tls(port, pairs, *opts, ca=CA, hostname=AUTH_NAME, timeout=None):
    """kdig over TLS verifying the test CA and name (kdig +tls alone
    verifies nothing).  `pairs`: [(name, type), ...]; options go before the
    names so that they apply to every query.  Returns a harness KdigResult
    (`.messages`: every answer printed)."""
    t = max(1, int(round(timeout or scaled(3))))
    cmd = [KDIG, "@127.0.0.1", "-p", str(port), "+tls"]
    if ca:
        cmd.append("+tls-ca=%s" % ca)
    if hostname:
        cmd.append("+tls-hostname=%s" % hostname)
    cmd += ["+json", "+retry=0", "+timeout=%d" % t] + list(opts)
    for name, rdtype in pairs:
        cmd += [name, rdtype]
    r = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                       timeout=t * 4 * max(1, len(pairs)) + 10)
    return KdigResult(cmd, r.returncode, r.stdout, r.stderr)


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
    timeout = timeout or scaled(15) + hold
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




class Stubby:
    """stubby (getdns) in the foreground with a config of our own in a
    temporary directory: TLS only, authentication required, the given CA,
    one upstream 127.0.0.1@tls_port named auth_name.  Killed by PID."""

    def __init__(self, tls_port, ca=CA, auth_name=AUTH_NAME):
        self.dir = tempfile.mkdtemp(prefix="dv-stubby-")
        self.port = free_port()
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
        wait_for(listening, scaled(10), interval=0.1, what="stubby listening")
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
        if not keep and not KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)
