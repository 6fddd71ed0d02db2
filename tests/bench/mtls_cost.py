#!/usr/bin/python3
"""The cost of client certificates (README "Performance", "Client
certificates"): server CPU per DoT handshake and per DoT cache-hit answer,
side by side, for three set-ups of one dnsveil (one worker):

  plain      no tls.client-ca (full handshakes: the client offers no ticket)
  mtls-none  tls.client-ca, the client sends no certificate
  mtls-cert  tls.client-ca, the client sends a verified EC P-256 certificate

  mtls_cost.py --dnsveil BIN [--handshakes N] [--queries N] [--runs R]

Clients are Python's ssl (OpenSSL) in this process, TLS 1.3, one full
handshake per connection (no session offered), then one query on it; the
cache-hit loop sends N queries for one cached name on one connection.  The
server's CPU time comes from /proc/PID/stat (user + system), so the
client's own cost does not count.  Prints a table; nothing is pass/fail.
Every process is ours, by PID; every loop is bounded.
"""

import argparse
import os
import ssl
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import dvtest as h  # noqa: E402

NAME = "who.mtls.test"
RECORDS = 'groups:\n  default:\n    records: ["%s. 300 IN A 192.0.2.1"]\n' % NAME


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context(cert=None):
    ctx = ssl.create_default_context(cafile=h.CA)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(["dot"])
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    return ctx


def one_query(s):
    h.send_msg(s, h.make_query(NAME, "A").to_wire())
    return h.recv_msg(s)


def handshakes(dv, ctx, n):
    t0, c0 = time.monotonic(), cpu_s(dv.pid)
    for _ in range(n):
        s = h.tls_connect(dv.tls_port, ctx=ctx, timeout=10)
        one_query(s)
        s.close()
    return (cpu_s(dv.pid) - c0) / n, (time.monotonic() - t0) / n


def hits(dv, ctx, n):
    s = h.tls_connect(dv.tls_port, ctx=ctx, timeout=10)
    one_query(s)
    wire = h.make_query(NAME, "A").to_wire()
    framed = len(wire).to_bytes(2, "big") + wire
    c0 = cpu_s(dv.pid)
    batch = 50
    for _ in range(n // batch):
        s.sendall(framed * batch)
        for _ in range(batch):
            h.recv_msg(s)
    c = cpu_s(dv.pid) - c0
    s.close()
    return c / (n // batch * batch)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dnsveil", required=True)
    ap.add_argument("--handshakes", type=int, default=400)
    ap.add_argument("--queries", type=int, default=50000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    os.environ["DNSVEIL"] = os.path.abspath(a.dnsveil)
    h.ensure_dev_certs()
    pki = tempfile.mkdtemp(prefix="dv-bench-mtls-")
    ca = h.make_ca(pki, "clients", "bench client CA")
    cert = h.make_leaf(pki, "kid7", "clients", cn="kid-7", sans="DNS:kid-7.clients.test",
                       eku="clientAuth")
    setups = [("plain", None, None), ("mtls-none", ca, None), ("mtls-cert", ca, cert)]
    rows = {k: [] for k, _, _ in setups}
    for run in range(a.runs):
        for name, client_ca, ccert in setups:
            cfg = h.dot_config(tls={"client-ca": client_ca} if client_ca else None,
                               limits={"tls-handshakes-per-ip": 0})
            dv = h.Dnsveil(listen=["dns", "tls"], upstream=["udp://127.0.0.1:%d" % h.free_port()],
                           config=cfg, workers=1, extra_yaml=RECORDS, name="bench-" + name)
            try:
                dv.start()
                ctx = context(ccert)
                handshakes(dv, ctx, 20)  # warm-up
                hs_cpu, hs_wall = handshakes(dv, ctx, a.handshakes)
                hit_cpu = hits(dv, ctx, a.queries)
                rows[name].append((hs_cpu, hs_wall, hit_cpu))
            finally:
                dv.stop()
                dv.cleanup()
        print("run %d done" % (run + 1), file=sys.stderr)
    base = rows["plain"]
    print("%-10s %16s %16s %18s %10s %10s" % ("setup", "server CPU/hs us", "wall/hs ms",
                                               "CPU/cache hit us", "hs ratio", "hit ratio"))
    for name, _, _ in setups:
        for i, (hc, hw, qc) in enumerate(rows[name]):
            print("%-10s %16.0f %16.2f %18.2f %10.2f %10.2f" % (
                name, hc * 1e6, hw * 1e3, qc * 1e6, hc / max(base[i][0], 1e-9), qc / max(base[i][2], 1e-9)))


if __name__ == "__main__":
    main()
