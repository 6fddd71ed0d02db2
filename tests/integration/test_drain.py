#!/usr/bin/python3
"""The lameduck drain (drain.delay-ms, drain.timeout-ms): SIGTERM makes
/readyz fail at once and dnsveil keeps serving every transport for the
delay (dnsperf over UDP and DoT loses nothing), then the listeners stop (a
new TCP connection is refused), queries in flight are answered and each
protocol says goodbye (DoT: TLS close_notify, a clean EOF for Python's ssl
with OP_IGNORE_UNEXPECTED_EOF cleared, not UNEXPECTED_EOF_WHILE_READING; DoH: HTTP/2 GOAWAY(NO_ERROR) with the stream in flight
answered; DoQ: the answer, then CONNECTION_CLOSE with DOQ_NO_ERROR), and
dnsveil exits 0 in a bounded time.  A second SIGTERM exits at once, and
drain.timeout-ms cuts a drain short (logged, counted, SERVFAIL over UDP)."""

import errno
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dns.message  # noqa: E402
import dns.rcode  # noqa: E402

import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

UDP_QPS = 500 if h.SANITIZE else 2000
DOT_QPS = 200 if h.SANITIZE else 1000
DOH_RPS = 100 if h.SANITIZE else 250  # per h2load client


def admin_get(port, path):
    return h.curl("http://127.0.0.1:%d%s" % (port, path))


def udp_probe(port, timeout):
    """One query on a connected UDP socket: 'answered', 'refused' (ICMP
    port unreachable) or 'timeout'."""
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.settimeout(timeout)
        u.connect(("127.0.0.1", port))
        u.send(h.make_query("www.example.test").to_wire())
        try:
            u.recv(512)
            return "answered"
        except ConnectionRefusedError:
            return "refused"
        except socket.timeout:
            return "timeout"
    finally:
        u.close()


def last_stats(dv):
    lines = dv._stats_lines()
    if not lines:
        raise AssertionError("no final dnsveil-stats line:\n%s" % h.tail(dv.stderr_path))
    return json.loads(lines[-1])


class DrainBase(h.IntegrationTest):

    def start_dv(self, slow_delay, drain, listen=("dns", "tls", "https", "quic"), workers=2):
        self.slow = self.start_slow(delay=slow_delay)
        self.ub = self.start_unbound(slow=self.slow, log_queries=False)
        self.admin_port = h.free_port()
        cfg = h.doq_config()
        cfg["pool"] = dict(cfg["pool"], **{"query-timeout-ms": 15000, "timeout-ms": 14000})
        cfg["drain"] = drain
        dv = h.Dnsveil(listen=list(listen), upstream=[self.ub], workers=workers, config=cfg,
                       name="drain", extra_yaml='admin:\n  listen: ["http://127.0.0.1:%d"]\n'
                       % self.admin_port)
        self._dnsveils.append(dv)
        dv.start()
        return dv

    def wait_exit(self, dv, timeout):
        try:
            dv.returncode = dv.proc.wait(timeout=timeout)
        except Exception:  # noqa: BLE001
            dv.kill()
            raise AssertionError("dnsveil did not exit within %.1f s:\n%s" % (
                timeout, h.tail(dv.stderr_path)))
        return dv.returncode


class Lameduck(DrainBase):

    def test_lameduck_under_load(self):
        # slow names asked after the signal are still in flight when the
        # listeners stop (the test Unbound gives up on an authority slower
        # than about 1.8 s); dnsperf is done sending before that
        delay_s, slow_s = 1.0, 1.5
        dv = self.start_dv(slow_s, {"delay-ms": int(delay_s * 1000), "timeout-ms": 10000})
        qfile = os.path.join(dv.dir, "queries.txt")
        with open(qfile, "w") as f:
            for i in range(h.NUM_HOSTS):
                f.write("h%d.example.test A\n" % i)
        self.assertEqual(admin_get(self.admin_port, "/readyz").status, 200)

        # connections that exist before the signal
        # Python's default context sets OP_IGNORE_UNEXPECTED_EOF, which
        # reads a TCP close without close_notify as a clean EOF too: cleared,
        # only a close_notify reads as b"" (else SSLError UNEXPECTED_EOF)
        strict = h.client_context(alpn=("dot",))
        strict.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
        idle_dot = h.tls_connect(dv.tls_port, ctx=strict)
        self.addCleanup(idle_dot.close)
        h2c = h.H2Client(dv.https_port, tls=True)
        self.addCleanup(h2c.close)
        sid0 = h2c.request("GET", wire=h.query_wire("www.example.test"))
        h2c.pump(lambda: h2c.streams[sid0].done, h.scaled(5))
        self.assertEqual(h2c.streams[sid0].status, 200, h2c.streams[sid0])

        res = {}

        def perf(key, *opts):
            res[key] = h.dnsperf(dv.port if key == "udp" else dv.tls_port, qfile, *opts)
        threads = [
            threading.Thread(target=perf, args=("udp", "-c", "4", "-l", "0.6", "-Q",
                                                str(UDP_QPS), "-t", "3")),
            threading.Thread(target=perf, args=("dot", "-m", "dot", "-c", "4", "-l", "0.6", "-Q",
                                                str(DOT_QPS), "-t", "3")),
        ]
        body = os.path.join(dv.dir, "body.bin")
        with open(body, "wb") as f:
            f.write(h.query_wire("www.example.test"))

        def h2load():
            res["doh"] = h.run_h2load(dv.url(True), body, "-c", "2", "-D", "600ms", "--rps",
                                      str(DOH_RPS))
        threads.append(threading.Thread(target=h2load))
        for t in threads:
            t.start()
        t0 = time.monotonic()
        dv.proc.send_signal(signal.SIGTERM)
        ready = h.wait_for(lambda: (lambda r: r if r.status == 503 else None)(
            admin_get(self.admin_port, "/readyz")), h.scaled(2), interval=0.02,
            what="/readyz 503 after SIGTERM")
        t_ready = time.monotonic() - t0
        self.assertEqual(ready.body, b"not ready: draining\n")

        # still serving during the delay, new connections too
        m = h.tcp_query(dv.port, "www.example.test")
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        # a slow name on the h2 connection and one over a new DoQ connection
        # (dnsveil-doq holds it until dnsveil closes it): answered slow_s
        # after they are asked, after the signal, so still in flight when
        # the listeners stop delay_s after it
        slow_name = h.unique_label("d") + "." + h.SLOW_ZONE
        sid = h2c.request("GET", wire=h.query_wire(slow_name))
        doq = {}
        tq = threading.Thread(target=lambda: doq.setdefault("r", dv.doq(
            "--hold", str(h.scaled(10)), "-t", str(h.scaled(10)),
            names=(h.unique_label("q") + "." + h.SLOW_ZONE, "A"))))
        tq.start()
        h.wait_for(lambda: self.slow.count >= 2, h.scaled(5), what="the slow names at the authority")
        t_slow = time.monotonic() - t0
        self.assertLess(t_slow, delay_s, "the slow names came after the listeners stopped")
        for t in threads:
            t.join(h.scaled(30))

        # the listeners stop after the delay: the idle DoT connection gets
        # close_notify, a new TCP connection is refused, the process is
        # still there (the slow names are in flight)
        waited, how, got = h.wait_closed(idle_dot, delay_s + h.scaled(3))
        t_dot = time.monotonic() - t0
        self.assertEqual((how, got), ("eof", b""),
                         "idle DoT connection: want a TLS close_notify (clean EOF), got %s" % how)
        def refused():
            s = socket.socket()
            try:
                s.settimeout(h.scaled(2))
                return s.connect_ex(("127.0.0.1", dv.port)) == errno.ECONNREFUSED
            finally:
                s.close()
        # every worker closes its listening sockets (the DoT one may have
        # said goodbye a moment before the TCP one of another worker closed)
        h.wait_for(refused, h.scaled(1), interval=0.01, what="TCP connect refused")
        # a UDP query now reaches a socket that is no longer read (it stays
        # open for the answers in flight): not answered, counted at close
        late = udp_probe(dv.port, 0.3)
        alive = dv.proc.poll() is None
        self.assertTrue(alive, "dnsveil exited before its queries in flight were answered")
        self.assertEqual(late, "timeout", "UDP query after the listeners stopped")

        h2c.pump(lambda: h2c.goaway is not None and h2c.streams[sid].done and h2c.closed,
                 h.scaled(10))
        tq.join(h.scaled(20))
        rc = self.wait_exit(dv, h.scaled(10))
        t_exit = time.monotonic() - t0
        # after the exit: a UDP query is refused (ICMP port unreachable)
        after = udp_probe(dv.port, h.scaled(2))

        for key in ("udp", "dot"):
            r, out = res[key]
            log("dnsperf %s: sent %s, completed %s, lost %s, %s qps" % (
                key, r.get("sent"), r.get("completed"), r.get("lost"), r.get("qps")))
            self.assertEqual(r["rc"], 0, out)
            self.assertGreater(r.get("completed", 0), 0, out)
            self.assertEqual(r.get("lost"), 0, "%s: queries lost during the drain:\n%s" % (key, out))
            self.assertEqual(r.get("noerror", 0), r["completed"], out)
        r, out = res["doh"]
        log("h2load DoH: %s" % r)
        self.assertEqual(r.get("proto"), "h2", out)
        self.assertGreater(r.get("done", 0), 0, out)
        self.assertEqual((r.get("succeeded"), r.get("2xx")), (r["done"], r["done"]),
                         "DoH requests lost or failed during the delay:\n%s" % out)
        # (in -D mode h2load stops at the end of the duration and does not
        # count a request it started in the last moment: started may be
        # done + 1 without any being lost; done ones all succeeded)
        st = h2c.streams[sid]
        log("SIGTERM +%.0f ms /readyz 503; +%.0f ms slow names asked; +%.0f ms DoT close_notify; h2 GOAWAY (code %s, last "
            "stream %s), slow stream %s; DoQ %r; exit %s at +%.0f ms; UDP after the stop: %s, after exit: %s" % (
                t_ready * 1000, t_slow * 1000, t_dot * 1000, h2c.goaway and int(h2c.goaway.error_code),
                h2c.goaway and h2c.goaway.last_stream_id, st, doq.get("r"), rc, t_exit * 1000,
                late, after))
        self.assertLess(t_ready, h.scaled(1))
        self.assertGreater(t_dot, delay_s * 0.9, "the listeners stopped before drain.delay-ms")
        self.assertIsNotNone(h2c.goaway, "no GOAWAY on the h2 connection")
        self.assertEqual(int(h2c.goaway.error_code), 0, repr(h2c.goaway))
        self.assertGreaterEqual(h2c.goaway.last_stream_id, sid)
        self.assertEqual(st.status, 200, "the slow stream in flight: %r" % st)
        self.assertEqual(dns.message.from_wire(st.body).rcode(), dns.rcode.NOERROR, repr(st))
        self.assertTrue(h2c.closed, "the h2 connection stayed open")
        r = doq["r"]
        self.assertEqual(r.summary["answers"], 1, r)
        self.assertEqual(r.answers[0]["rcode"], "NOERROR", r)
        c = r.close()
        self.assertEqual((c.get("by"), c.get("kind"), c.get("code")), ("peer", "application", 0),
                         "DoQ: want CONNECTION_CLOSE DOQ_NO_ERROR from dnsveil: %r" % r)
        self.assertEqual(rc, 0, h.tail(dv.stderr_path))
        self.assertLess(t_exit, slow_s + h.scaled(3), "exit took too long")
        self.assertEqual(after, "refused")
        fin = last_stats(dv)
        self.assertEqual((fin["drain_cut_queries"], fin["drain_cut_connections"]), (0, 0), fin)
        self.assertEqual(fin["drain_udp_unanswered"], 1, fin)
        self.assertEqual(fin["servfail"], 0, fin)
        log("ok: lameduck %.1f s under dnsperf UDP + DoT and h2load DoH (0 lost), then close_notify, GOAWAY, "
            "DOQ_NO_ERROR, connect refused, exit 0 after %.2f s" % (delay_s, t_exit))


class Cut(DrainBase):

    def slow_udp(self, dv, out):
        name = h.unique_label("c") + "." + h.SLOW_ZONE
        t = threading.Thread(target=lambda: out.setdefault("r", h.udp_query(
            dv.port, name, timeout=h.scaled(15))))
        t.start()
        h.wait_for(lambda: self.slow.count >= 1, h.scaled(5), what="the slow name at the authority")
        return t

    def test_second_sigterm_exits_at_once(self):
        dv = self.start_dv(10.0, {"delay-ms": 20000}, listen=("dns",), workers=1)
        out = {}
        t = self.slow_udp(dv, out)
        dv.proc.send_signal(signal.SIGTERM)
        dv.wait_log("draining", h.scaled(5))
        self.assertIsNone(dv.proc.poll())
        m = h.udp_query(dv.port, "www.example.test")  # still serving (lameduck)
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        t0 = time.monotonic()
        dv.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(dv, h.scaled(3))
        took = time.monotonic() - t0
        t.join(h.scaled(5))
        fin = last_stats(dv)
        log("second SIGTERM: exit %s after %.0f ms; the query in flight got %s; cut %s" % (
            rc, took * 1000, out.get("r") and dns.rcode.to_text(out["r"].rcode()),
            fin["drain_cut_queries"]))
        self.assertEqual(rc, 0)
        self.assertLess(took, h.scaled(1))
        self.assertEqual(out["r"].rcode(), dns.rcode.SERVFAIL)
        self.assertEqual(fin["drain_cut_queries"], 1, fin)
        self.assertTrue(dv.log_lines("again: stopping at once"), h.tail(dv.stderr_path))
        log("ok: second SIGTERM exits at once (0), the query in flight answered SERVFAIL")

    def test_timeout_cuts_the_drain(self):
        dv = self.start_dv(10.0, {"delay-ms": 0, "timeout-ms": 300}, listen=("dns",), workers=1)
        out = {}
        t = self.slow_udp(dv, out)
        t0 = time.monotonic()
        dv.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(dv, h.scaled(3))
        took = time.monotonic() - t0
        t.join(h.scaled(5))
        fin = last_stats(dv)
        log("drain.timeout-ms 300: exit %s after %.0f ms; the query in flight got %s; cut %s" % (
            rc, took * 1000, out.get("r") and dns.rcode.to_text(out["r"].rcode()),
            fin["drain_cut_queries"]))
        self.assertEqual(rc, 0)
        self.assertGreater(took, 0.25)
        self.assertLess(took, h.scaled(1.5))
        self.assertEqual(out["r"].rcode(), dns.rcode.SERVFAIL)
        self.assertEqual(fin["drain_cut_queries"], 1, fin)
        self.assertTrue(dv.log_lines("drain.timeout-ms ran out with 1 queries in flight"),
                        h.tail(dv.stderr_path))
        log("ok: drain.timeout-ms cuts the drain: exit 0, the query in flight SERVFAIL, counted")


if __name__ == "__main__":
    h.main()
