"""TLS on the client side: the development certificates (certs/), client
contexts trusting the test CA, TCP and TLS connections, reading until the
peer closes, and a throw-away PKI made with the openssl command line."""

import os
import re
import shutil
import socket
import ssl
import subprocess
import time

from .env import SOURCE_DIR, read_text, scaled

CERTS_DIR = os.path.join(SOURCE_DIR, "certs")
CA = os.path.join(CERTS_DIR, "ca.pem")
CERT = os.path.join(CERTS_DIR, "dev-cert.pem")
KEY = os.path.join(CERTS_DIR, "dev-key.pem")
AUTH_NAME = "dns.test"

OPENSSL = shutil.which("openssl", path="/usr/bin:/bin") or "openssl"


def ensure_dev_certs():
    """certs/ca.pem, dev-cert.pem, dev-key.pem (made by the repository's
    script when missing or when the certificate lacks *.dns.test, the
    policy's client-ID names; it does nothing otherwise)."""
    if not (os.path.isfile(CERT) and os.path.isfile(KEY) and os.path.isfile(CA)) \
            or b"*.dns.test" not in subprocess.run(
                [OPENSSL, "x509", "-in", CERT, "-noout", "-ext", "subjectAltName"],
                capture_output=True, timeout=30).stdout:
        subprocess.run(["sh", os.path.join(CERTS_DIR, "make-dev-cert.sh")], check=True,
                       capture_output=True, timeout=60)
    for p in (CA, CERT, KEY):
        if not os.path.isfile(p):
            raise AssertionError("%s missing (sh certs/make-dev-cert.sh)" % p)




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
        s.settimeout(timeout if timeout is not None else scaled(5))
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


def read_until_closed(s, timeout):
    """wait_closed() in the order the HTTP tests read it: (bytes,
    'eof'|'reset'|'timeout'|'tls error', seconds)."""
    waited, how, got = wait_closed(s, timeout)
    return got, how.split(":")[0], waited


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
              sans="DNS:dns.test,DNS:*.dns.test,DNS:localhost,IP:127.0.0.1,IP:::1",
              eku="serverAuth"):
    """A leaf signed by d/ca_name: d/name-key.pem and d/name-chain.pem
    (leaf then CA).  `eku`: clientAuth for a client certificate (mTLS);
    `sans` None: no subjectAltName.  Returns (chain path, key path)."""
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
                "extendedKeyUsage=%s\n%s"
                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n" % (
                    eku, "subjectAltName=%s\n" % sans if sans else ""))
    _openssl("x509", "-req", "-sha256", "-days", "30", "-in", csr, "-CA", ca, "-CAkey", ca_key,
             "-CAcreateserial", "-CAserial", os.path.join(d, ca_name + ".srl"),
             "-extfile", ext, "-out", leaf)
    _openssl("verify", "-CAfile", ca, leaf)
    with open(chain, "w") as f:
        f.write(read_text(leaf) + read_text(ca))
    return chain, key
