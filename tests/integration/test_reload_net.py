#!/usr/bin/python3
"""Live reload of listeners, upstreams, limits and the doh settings (SIGHUP).

dnsveil starts with two workers, one real Unbound ("one") as its upstream,
and Do53, an extra dns:// and DoT listeners; each test rewrites its
configuration file and sends SIGHUP:

- a tls:// and a quic:// listener added (the first DoQ listener: its
  context is made by the reload) and the extra dns:// one removed: kdig
  and dnsveil-doq reach the new ones; the removed one closes its idle TCP
  connection, stops answering over UDP and refuses TCP; and a DoT
  connection opened before the reload on the kept listener keeps
  answering on the same socket;
- a listener that cannot be bound (a port below 1024 once dnsveil has
  dropped its capabilities; a port another process holds): the reload is
  refused with `FILE: listen: URL: cannot bind: ...` and nothing changes
  (the removed listener of the same file still answers);
- upstream: from Unbound "one" to Unbound "two" (the zone's *.whoami TXT
  names the server): new names are answered by "two", a name cached before
  stays cached, and "one" gets no query after the reload;
- limits.tcp-idle-timeout-ms lowered: a new idle TCP connection is closed
  after the new timeout; doh.paths grown: the new path answers;
- pool.udp-socket-queries from the default to 1: UDP misses that shared a
  socket to the loopback Unbound get one socket each after the reload;
- under load: dnsperf over UDP, DoT and DoH (cache misses: every name is
  new) and a bounded dnsveil-doq loop while SIGHUP comes repeatedly, the
  upstream alternating between the two Unbounds, a tls:// listener added
  and removed, and the certificate and key swapped between two valid
  pairs: not one query lost or failed.
"""

import os
import signal
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

h.ensure_dev_certs()

WWW = "www.example.test"
WWW_ADDR = "192.0.2.1"


def set_key(text, key, value):
    """`text` with its top-level `key:` line rendered again from `value`."""
    lines = text.splitlines()
    new = h.to_yaml({key: value}).rstrip("\n")
    out = [new if ln.startswith(key + ":") else ln for ln in lines]
    if new not in out:
        out.append(new)
    return "\n".join(out) + "\n"


def whoami(port, name):
    """Which Unbound answered the fresh name `name`.whoami.example.test."""
    m = h.udp_query(port, "%s.whoami.example.test" % name, "TXT")
    return h.txt_value(m)


def dot_conn(port):
    s = h.tls_connect(port, ctx=h.client_context())
    s.settimeout(h.scaled(3))
    return s


def dot_ask(s, name):
    _, m = h.stream_query(s, h.make_query(name))
    return h.a_records(m)


class NetReload(h.ReloadMixin, h.IntegrationTest):

    def setUp(self):
        h.IntegrationTest.setUp(self)
        self.private_pki("dv-reload-net-pki-")
        self.one = self.start_unbound(whoami="one", log_queries=False)
        self.two = self.start_unbound(whoami="two", log_queries=False)
        self.admin = h.free_port()
        self.udp2 = h.free_port()
        self.dv = self.start_dnsveil(
            upstream=[self.one],
            listen=["dns", "dns://127.0.0.1:%d" % self.udp2, "tls"],
            config=h.dot_config(cert=self.cert, key=self.key),
            extra_yaml="admin:\n  listen: [\"http://127.0.0.1:%d\"]\n" % self.admin)
        with open(self.dv.conf_path) as f:
            self.base = f.read()

    # ---- helpers

    def reload_with(self, text):
        """Write `text` as the config and SIGHUP; the log of the reload."""
        self.write_config(text)
        return self.hup()

    def udp_answers(self, port):
        try:
            m = h.udp_query(port, WWW, timeout=0.5)
            return h.a_records(m) == [WWW_ADDR]
        except Exception:  # a timeout: nothing answers there
            return False

    # ---- tests

    def test_listeners_added_and_removed(self):
        tls2, quic2 = h.free_port(), h.free_port()
        self.assertTrue(self.udp_answers(self.udp2))
        conn = dot_conn(self.dv.tls_port)
        self.addCleanup(conn.close)
        self.assertEqual(dot_ask(conn, WWW), [WWW_ADDR])
        # an idle Do53 TCP connection on the listener that goes
        tcp = h.tcp_connect(self.udp2)
        self.addCleanup(tcp.close)
        _, m = h.stream_query(tcp, h.make_query(WWW))
        self.assertEqual(h.a_records(m), [WWW_ADDR])
        listen = [u for u in self.dv.listen if u != "dns://127.0.0.1:%d" % self.udp2]
        listen += ["tls://127.0.0.1:%d" % tls2, "quic://127.0.0.1:%d" % quic2]
        logged = self.reload_with(set_key(self.base, "listen", listen))
        self.assertRegex(logged, r"configuration checked and reloaded")
        self.assertNotRegex(logged, r"takes effect on restart")

        r = h.kdig_tls(tls2, [(WWW, "A")])
        self.assertEqual(h.kdig_answers(r), [(WWW + ".", [WWW_ADDR])],
                         "kdig over TLS to the added listener: %r" % r)
        # 16 connections from as many ports: both workers take some, and
        # each connection's packets reach the worker that holds it
        d = h.Doq(quic2, ["--name", h.AUTH_NAME, "--ca", h.CA, "-K", "16", "-c", "4", "-C", "1"],
                  names=[WWW, "A", "mail.example.test", "A"], trust=False)
        self.assertEqual((d.rc, d.summary["answers"], d.summary["errors"]), (0, 128, {}),
                         "dnsveil-doq to the added quic:// listener (the first): %r" % d)
        took, how, _ = h.wait_closed(tcp, h.scaled(5))
        self.assertEqual(how, "eof", "the idle TCP connection of the removed listener")
        h.wait_for(lambda: not self.udp_answers(self.udp2), h.scaled(10),
                   what="the removed dns:// listener to stop answering over UDP")
        self.assertRaises(OSError, h.tcp_connect, self.udp2)
        self.assertEqual(dot_ask(conn, "mail.example.test"), ["192.0.2.25"],
                         "the DoT connection opened before the reload")
        self.assertTrue(self.udp_answers(self.dv.port), "the kept dns:// listener")
        log("ok: tls://:%d added (kdig answered), quic://:%d added (the first DoQ listener: "
            "dnsveil-doq answered), dns://:%d removed (its idle TCP connection closed after "
            "%.2f s, UDP unanswered, TCP refused), a DoT connection of the kept listener "
            "answered across the reload" % (tls2, quic2, self.udp2, took))

        # a port below 1024 (dnsveil dropped every capability after start)
        # and a port another process holds: refused, nothing changes
        low = 1024 - (os.getpid() % 400) - 1
        busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        for url, why in (("tls://127.0.0.1:%d" % low, r"Permission denied \(a port below "
                          r"1024 needs CAP_NET_BIND_SERVICE"),
                         ("tcp://127.0.0.1:%d" % busy.getsockname()[1],
                          r"Address already in use \(another process holds it")):
            bad = set_key(self.base, "listen", listen + [url])
            logged = self.reload_with(bad)
            self.assertRegex(logged, r"configuration refused, the running one stays in "
                             r"force: \S+dnsveil\.yaml: listen: %s: cannot bind: %s"
                             % (url.replace(".", r"\."), why))
        self.assertEqual(self.counts()[:2], (1, 2))
        r = h.kdig_tls(tls2, [(WWW, "A")])
        self.assertEqual(h.kdig_answers(r), [(WWW + ".", [WWW_ADDR])], repr(r))
        self.assertFalse(self.udp_answers(self.udp2),
                         "a refused reload brought the dns:// listener back")
        log("ok: a listener below 1024 or on a port in use refuses the reload whole")

    def test_upstream_changed(self):
        self.assertEqual(whoami(self.dv.port, "a1"), "one")
        q_two = self.two.num_queries()
        logged = self.reload_with(set_key(self.base, "upstream", [self.two.url("tcp")]))
        self.assertRegex(logged, r"configuration checked and reloaded")
        self.assertNotRegex(logged, r"takes effect on restart")
        q_one = self.one.num_queries()
        for i in range(20):
            self.assertEqual(whoami(self.dv.port, "b%d" % i), "two", "name b%d" % i)
        self.assertEqual(whoami(self.dv.port, "a1"), "one", "a1 answered from the cache")
        self.assertEqual(self.one.num_queries(), q_one,
                         "Unbound one got queries after the reload")
        self.assertGreaterEqual(self.two.num_queries() - q_two, 20)
        log("ok: after the reload 20 new names came from Unbound two, none reached one, "
            "and a name cached before stayed cached")

    def test_udp_socket_queries(self):
        def sockets_for(n, label):
            s0 = self.dv.stats()["upstream_udp_sockets"]
            for i in range(n):
                whoami(self.dv.port, "%s%d" % (label, i))
            return self.dv.stats()["upstream_udp_sockets"] - s0
        # two workers: one socket each at most, whichever takes the query
        before = sockets_for(20, h.unique_label("u"))
        self.assertLessEqual(before, 2)
        self.assertIn("pool: {", self.base)
        logged = self.reload_with(self.base.replace("pool: {",
                                                    "pool: { udp-socket-queries: 1,"))
        self.assertRegex(logged, r"configuration checked and reloaded")
        self.assertNotRegex(logged, r"takes effect on restart")
        after = sockets_for(20, h.unique_label("v"))
        self.assertEqual(after, 20, "a socket per query after the reload")
        log("ok: pool.udp-socket-queries 256 -> 1 live: 20 UDP misses on %d socket(s), "
            "then on %d" % (before, after))

    def test_tcp_idle_timeout(self):
        self.assertIn("tcp-idle-timeout-ms: 10000", self.base)
        text = self.base.replace("tcp-idle-timeout-ms: 10000", "tcp-idle-timeout-ms: 300")
        self.reload_with(text)
        s2 = h.tcp_connect(self.dv.port)
        self.addCleanup(s2.close)
        took, how, _ = h.wait_closed(s2, h.scaled(3))
        self.assertEqual(how, "eof", "a new idle TCP connection after tcp-idle-timeout-ms "
                         "300, %.2f s" % took)
        self.assertLess(took, h.scaled(2))
        log("ok: limits.tcp-idle-timeout-ms 10000 -> 300: a new idle TCP connection was "
            "closed after %.2f s" % took)

    def handshakes(self, n):
        """`n` DoT handshakes from 127.0.0.1 in a row: how many completed."""
        ok = 0
        for _ in range(n):
            try:
                dot_conn(self.dv.tls_port).close()
                ok += 1
            except (OSError, ValueError):
                pass
        return ok

    def test_handshake_admission(self):
        self.assertIn("tcp-idle-timeout-ms: 10000", self.base)
        capped = self.base.replace(
            "tcp-idle-timeout-ms: 10000",
            "tcp-idle-timeout-ms: 10000, handshake-pressure: 0, "
            "tls-handshakes-per-ip: 1, tls-handshake-burst: 2")
        self.assertEqual(self.handshakes(6), 6)
        logged = self.reload_with(capped)
        self.assertRegex(logged, r"configuration checked and reloaded")
        self.assertNotRegex(logged, r"takes effect on restart")
        ok = self.handshakes(8)
        # a burst of 2 (at most 2 per worker, rounded up) and 1 per second
        self.assertLessEqual(ok, 2 * 2 + 1,  # two workers
                             "handshakes let in after the cap was reloaded")
        self.assertGreaterEqual(ok, 1)
        self.reload_with(self.base)
        self.assertEqual(self.handshakes(6), 6, "the cap was lifted by the reload")
        log("ok: handshake admission reloaded live: 6/6, then %d/8 under "
            "tls-handshakes-per-ip 1 burst 2, then 6/6 again" % ok)

    def test_doh_paths(self):
        extra = "https://127.0.0.1:%d/dns-query" % h.free_port()
        listen = self.dv.listen + [extra]
        text = set_key(self.base, "listen", listen)
        self.reload_with(text)
        wire = h.b64url(h.make_query(WWW).to_wire())
        r = h.curl("--cacert", h.CA, "-H", "accept: application/dns-message",
                   extra.replace("/dns-query", "/kids") + "?dns=" + wire)
        self.assertEqual(r.status, 404, r)
        self.reload_with(text + "doh:\n  paths: [\"/kids\"]\n")
        r = h.curl("--cacert", h.CA, "-H", "accept: application/dns-message",
                   extra.replace("/dns-query", "/kids") + "?dns=" + wire)
        self.assertEqual(r.status, 200, r)
        log("ok: an https:// listener added by SIGHUP, then doh.paths /kids: 404 -> 200")
        t = h.curl("http://127.0.0.1:%d/metrics" % self.admin).body.decode()
        self.assertEqual(h.metric(t, 'dnsveil_queries_total{transport="https"}'), 1, t)
        log("ok: /metrics counts the queries of the transport the reload added")


class NetReloadLoad(h.ReloadMixin, h.IntegrationTest):
    """dnsperf UDP, DoT and DoH, and dnsveil-doq, during repeated reloads."""

    def setUp(self):
        h.IntegrationTest.setUp(self)
        self.private_pki("dv-reload-net-pki-")
        self.one = self.start_unbound(whoami="one", log_queries=False)
        self.two = self.start_unbound(whoami="two", log_queries=False)
        self.admin = h.free_port()
        self.dv = self.start_dnsveil(
            upstream=[self.one], listen=["dns", "tls", "https", "quic"],
            config=h.doh_config(cert=self.cert, key=self.key,
                                limits={"tls-handshakes-per-ip": 0}),
            extra_yaml="admin:\n  listen: [\"http://127.0.0.1:%d\"]\n" % self.admin)
        with open(self.dv.conf_path) as f:
            self.base = f.read()

    def test_zero_lost_under_reloads(self):
        scale = 3 if h.SANITIZE else 1
        secs = 8
        qfile = os.path.join(self.dv.dir, "queries.txt")
        with open(qfile, "w") as f:
            for i in range(40000):  # every name new: the upstreams are asked
                f.write("n%d.wild.example.test A\n" % i)
        vol, pairs = self.secret_volume()
        extra_tls = "tls://127.0.0.1:%d" % h.free_port()
        results = {}

        def perf(name, port, *opts):
            results[name] = h.dnsperf(port, qfile, *opts, timeout=h.scaled(120))

        def doq_loop():
            runs, queries, answers, errors = 0, 0, 0, {}
            end = time.monotonic() + secs
            while runs < 200 and time.monotonic() < end:
                names = []
                for i in range(10):
                    names += ["q%d-%d.wild.example.test" % (runs, i), "A"]
                d = self.dv.doq("-k", "-c", "2", names=names, trust=False)
                runs += 1
                queries += d.summary["queries"]
                answers += d.summary["answers"]
                for k, v in d.summary.get("errors", {}).items():
                    errors[k] = errors.get(k, 0) + v
            results["DoQ"] = (runs, queries, answers, errors)

        qps = 1500 // scale
        runs = [
            threading.Thread(target=perf, args=("UDP", self.dv.port, "-c", "4", "-l", str(secs),
                                                "-Q", str(qps), "-t", "5")),
            threading.Thread(target=perf, args=("DoT", self.dv.tls_port, "-m", "dot", "-c", "4",
                                                "-l", str(secs), "-Q", str(qps // 3),
                                                "-t", "5")),
            threading.Thread(target=perf, args=("DoH", self.dv.https_port, "-m", "doh",
                                                "-O", "doh-uri=%s" % self.dv.url(True),
                                                "-c", "4", "-q", "1", "-l", str(secs),
                                                "-t", "5")),
            threading.Thread(target=doq_loop),
        ]
        for t in runs:
            t.start()
        q1, q2 = self.one.num_queries(), self.two.num_queries()
        hups = 0
        deadline = time.monotonic() + secs - 1
        ups = [self.one.url("tcp"), self.two.url("tcp")]
        while hups < 30 and time.monotonic() < deadline:
            hups += 1
            text = set_key(self.base, "upstream", [ups[hups % 2]])
            listen = self.dv.listen + ([extra_tls] if hups % 2 else [])
            text = set_key(text, "listen", listen)
            tmp = self.dv.conf_path + ".new"
            with open(tmp, "w") as f:
                f.write(text)
            os.rename(tmp, self.dv.conf_path)
            h.publish(vol, "v%d" % hups, *pairs[hups % 2])
            self.dv.proc.send_signal(signal.SIGHUP)
            h.wait_for(lambda: self.counts()[0] >= hups, h.scaled(5),
                       what="reload %d counted" % hups)
            time.sleep(0.2)  # the pace of the reloads over the run
        for t in runs:
            t.join(h.scaled(120))
        ok, failed, _ = self.counts()
        q1, q2 = self.one.num_queries() - q1, self.two.num_queries() - q2
        log("%d SIGHUPs sent; reloads counted (with the certificate watcher's): %d applied, "
            "%d refused; Unbound one got %d queries, two %d" % (hups, ok, failed, q1, q2))
        self.assertEqual(failed, 0, "every reload had a valid file and pair")
        self.assertGreaterEqual(hups, 5)
        self.assertGreater(q1, 0)
        self.assertGreater(q2, 0)
        for name in ("UDP", "DoT", "DoH"):
            res, out = results[name]
            log("%s: sent %s, completed %s, lost %s, noerror %s, %s qps" % (
                name, res.get("sent"), res.get("completed"), res.get("lost"),
                res.get("noerror"), res.get("qps")))
            self.assertEqual(res["rc"], 0, "%s: dnsperf exited %s:\n%s" % (name, res["rc"], out))
            self.assertGreater(res.get("completed", 0), 0, out)
            self.assertEqual(res.get("lost"), 0, "%s: queries lost during reloads:\n%s"
                             % (name, out))
            self.assertEqual(res.get("noerror", 0), res["completed"],
                             "%s: not every answer NOERROR:\n%s" % (name, out))
        runs_doq, queries, answers, errors = results["DoQ"]
        log("DoQ: %d dnsveil-doq runs, %d queries, %d answers, errors %s"
            % (runs_doq, queries, answers, errors))
        self.assertGreater(queries, 0)
        self.assertEqual((answers, errors), (queries, {}))
        log("ok: UDP, DoT, DoH and DoQ lost nothing while %d reloads changed the upstream, "
            "a listener and the certificate" % hups)


if __name__ == "__main__":
    h.main()
