#!/usr/bin/python3
"""A udp:// upstream: answers come over UDP, a truncated upstream answer is
asked again over TCP (the client gets the whole answer), and the fallback
takes over when the UDP upstream is gone.

Hard to poison: an observer upstream (a small responder here, standing in
for what an off-path attacker would have to guess) sees each query from a
port of its own with a random id when pool.udp-socket-queries is 1; an
answer from another port, or with the right id but another question, does
not reach the client; udp:// and tcp:// upstreams outside local networks
are warned about at start-up.

Sockets reused to a loopback server (pool.udp-socket-queries): the
observer sees K queries in a row from one port, each with its own random
id, then a new port; an answer that comes late (after pool.timeout-ms, the
query asked again over TCP) while the socket carries the next query, or
while it carries none, is not taken, is counted, and retires the socket:
the next query comes from a new port."""

import os
import socket
import sys
import tempfile
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.rrset  # noqa: E402

REAL = "192.0.2.10"     # what the observer answers
FORGED = "198.51.100.66"  # what a forged answer says


class Observer:
    """A UDP (and TCP, for the pool's stream connections) responder on
    127.0.0.1 that answers every question with REAL (A, TTL 300; other types
    NODATA) and records (source port, id, name) of each UDP query.  Names
    starting with "spoof-" first get a forged answer (FORGED, the right id
    and question) sent from another socket of ours to the query's source;
    names starting with "wrongq-" first get one from the right socket with
    the right id but another name.  The real answer follows `delay` s
    later.  Names starting with "late-" get their UDP answer (with FORGED:
    it must never reach a client) only when the next UDP query from the
    same port comes, just before that query's own answer, or after `hold`
    s if none comes; `late_sent` counts them (TCP answers at once)."""

    def __init__(self, delay=0.3, hold=1.0):
        self.delay = delay
        self.hold = hold
        self.port = h.free_port()
        self.queries = []  # (port, id, name)
        self.forged_sent = 0
        self.late_sent = 0
        self._held = {}  # port -> answer held back ("late-")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.udp.settimeout(0.2)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.1", 0))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(16)
        self.tcp.settimeout(0.2)
        for target in (self._udp_loop, self._tcp_loop):
            threading.Thread(target=target, daemon=True).start()

    def url(self, scheme="udp"):
        return "%s://127.0.0.1:%d" % (scheme, self.port)

    def response(self, q, name=None, address=REAL):
        if name is not None:  # the same id, another question
            other = dns.message.make_query(name, "A")
            other.id = q.id
            q = other
        r = dns.message.make_response(q)
        r.flags |= dns.flags.RA
        if q.question[0].rdtype == dns.rdatatype.A:
            r.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "A",
                                                address))
        return r.to_wire()

    def _udp_loop(self):
        while not self._stop.is_set():
            try:
                wire, peer = self.udp.recvfrom(65535)
                q = dns.message.from_wire(wire)
            except socket.timeout:
                continue
            except OSError:
                return
            except Exception:  # noqa: BLE001 - not DNS: ignore
                continue
            if not q.question:
                continue
            label = q.question[0].name.labels[0].decode().lower()
            with self._lock:
                self.queries.append((peer[1], q.id, q.question[0].name.to_text().lower()))
                held = self._held.pop(peer[1], None)
            if held is not None:  # the late answer first, then this one's
                self._send_late(held, peer)
            if label.startswith("late-"):
                late = self.response(q, address=FORGED)
                with self._lock:
                    self._held[peer[1]] = late
                t = threading.Timer(self.hold, self._release_late, (peer, late))
                t.daemon = True
                t.start()
                continue
            later = 0
            try:
                if label.startswith("spoof-"):
                    self.other.sendto(self.response(q, address=FORGED), peer)
                    self.forged_sent += 1
                    later = self.delay
                elif label.startswith("wrongq-"):
                    self.udp.sendto(self.response(q, name="other.example.test",
                                                  address=FORGED), peer)
                    self.forged_sent += 1
                    later = self.delay
            except OSError:
                pass
            real = self.response(q)  # (A or NODATA: nothing here can fail)
            if later:
                t = threading.Timer(later, self._send, (real, peer))
                t.daemon = True
                t.start()
            else:
                self._send(real, peer)

    def _release_late(self, peer, wire):
        with self._lock:
            if self._held.get(peer[1]) is not wire:
                return  # sent already, before the next query's answer
            del self._held[peer[1]]
        self._send_late(wire, peer)

    def _send_late(self, wire, peer):
        self._send(wire, peer)
        with self._lock:
            self.late_sent += 1

    def _send(self, wire, peer):
        if self._stop.is_set():
            return
        try:
            self.udp.sendto(wire, peer)
        except OSError:
            pass

    def _tcp_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._tcp_conn, args=(conn,), daemon=True).start()

    def _tcp_conn(self, conn):
        conn.settimeout(30)
        with conn:
            while not self._stop.is_set():
                try:
                    q = dns.message.from_wire(h.recv_msg(conn))
                    h.send_msg(conn, self.response(q))
                except Exception:  # noqa: BLE001 - closed or not DNS
                    return

    def seen(self, names):
        """(port, id) of the UDP queries for `names` (lowercase, with the
        final dot)."""
        with self._lock:
            return [(p, i) for p, i, n in self.queries if n in names]

    def port_of(self, name):
        """The source port of the last UDP query for `name`."""
        name = name.lower().rstrip(".") + "."
        with self._lock:
            return [p for p, _, n in self.queries if n == name][-1]

    def stop(self):
        self._stop.set()
        for s in (self.udp, self.other, self.tcp):
            try:
                s.close()
            except OSError:
                pass


class UdpUpstream(h.IntegrationTest):

    def test_udp_then_tc_retry_over_tcp(self):
        up = self.start_resolver(whoami="local")
        d = self.start_dnsveil(upstream=[up.url("udp")])

        m = h.udp_query(d.port, "www.example.test", "A")
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        self.assertEqual([r[3] for r in h.rrset_texts(m)], ["192.0.2.1"],
                         "www's A record over a udp:// upstream")
        s0 = d.stats()
        self.assertGreater(s0["upstream_answers"], 0)
        self.assertEqual(s0["upstream_tc_retries"], 0)

        # ~3000 bytes: the upstream's UDP answer (EDNS 1232) is truncated,
        # dnsveil asks again over TCP and the TCP client gets all of it
        m = h.tcp_query(d.port, "big.example.test", "TXT")
        self.assertEqual(m.rcode(), dns.rcode.NOERROR)
        self.assertFalse(m.flags & 0x0200, "no TC over TCP")
        got = [s.decode() for rr in m.answer for r in rr for s in r.strings]
        self.assertEqual(got, h.big_txt_strings(), "the whole TXT record")
        s1 = d.stats()
        self.assertEqual(s1["upstream_tc_retries"], 1,
                         "one truncated UDP answer retried over TCP")
        log("ok: big TXT (%d strings) through a udp:// upstream after a TC retry"
            % len(got))

    def test_udp_upstream_gone_fallback_answers(self):
        up = self.start_resolver(whoami="local")
        fb = self.start_resolver(whoami="fallback")
        d = self.start_dnsveil(upstream=[up.url("udp")], fallback=[fb],
                               config=h.base_config(pool={"hedge-delay-ms": 200,
                                                          "timeout-ms": 500}))
        name = h.unique_label("a") + ".whoami.example.test"
        self.assertEqual(h.txt_value(h.udp_query(d.port, name, "TXT")), "local")
        up.kill()
        for i in range(5):
            name = h.unique_label("b") + ".whoami.example.test"
            m = h.udp_query(d.port, name, "TXT", timeout=h.scaled(5))
            self.assertEqual(m.rcode(), dns.rcode.NOERROR)
            self.assertEqual(h.txt_value(m), "fallback")
        log("ok: udp:// upstream killed, the fallback answered 5 of 5")


class UdpUpstreamHardening(h.IntegrationTest):

    def start_observer(self, hold=1.0):
        obs = Observer(delay=h.scaled(0.3), hold=h.scaled(hold))
        self.addCleanup(obs.stop)
        return obs

    def test_queries_from_random_ports_with_random_ids(self):
        # pool.udp-socket-queries 1: a socket per query, also to loopback
        obs = self.start_observer()
        d = self.start_dnsveil(upstream=[obs.url()],
                               config=h.base_config(pool={"udp-socket-queries": 1}))
        names = ["%s.example.test." % h.unique_label("p%02d-" % i) for i in range(30)]
        for n in names:
            m = h.udp_query(d.port, n, "A")
            self.assertEqual([r[3] for r in h.rrset_texts(m)], [REAL], n)
        seen = obs.seen(set(names))
        self.assertEqual(len(seen), 30, "one UDP query per cache-missing name: %s" % seen)
        ports = sorted({p for p, _ in seen})
        ids = [i for _, i in seen]
        log("30 cache-missing queries: %d distinct source ports (%d..%d), "
            "%d distinct ids (%d..%d)" % (len(ports), ports[0], ports[-1],
                                          len(set(ids)), min(ids), max(ids)))
        self.assertGreaterEqual(len(ports), 25, "source ports: %s" % ports)
        self.assertGreaterEqual(len(set(ids)), 28, "ids: %s" % ids)
        # 30 random 16-bit ids span far more than a few thousand values,
        # and hardly any two in a row are near each other (0.2 such pairs
        # expected; 4 or more: 1 in 10,000)
        self.assertGreater(max(ids) - min(ids), 16384, "ids: %s" % ids)
        near = sum(1 for a, b in zip(ids, ids[1:]) if abs(a - b) < 256)
        self.assertLessEqual(near, 3, "ids close to the one before: %s" % ids)

    def test_answer_from_another_port_is_not_taken(self):
        obs = self.start_observer()
        d = self.start_dnsveil(upstream=[obs.url()])
        for k in range(3):
            name = "spoof-%s.example.test" % h.unique_label("s%d-" % k)
            m = h.udp_query(d.port, name, "A", timeout=h.scaled(5))
            self.assertEqual(m.rcode(), dns.rcode.NOERROR)
            self.assertEqual([r[3] for r in h.rrset_texts(m)], [REAL],
                             "%s: the real answer, not the one from another port" % name)
        self.assertEqual(obs.forged_sent, 3, "a forged answer went out before each real one")
        log("ok: 3 answers forged from another port (right id and question) "
            "ignored; the client got the real answer %s" % REAL)

    def test_answer_to_another_question_is_dropped(self):
        obs = self.start_observer()
        d = self.start_dnsveil(upstream=[obs.url()], workers=1)
        s0 = d.stats()
        ports = []
        for k in range(3):
            name = "wrongq-%s.example.test" % h.unique_label("q%d-" % k)
            m = h.udp_query(d.port, name, "A", timeout=h.scaled(5))
            self.assertEqual(m.rcode(), dns.rcode.NOERROR)
            self.assertEqual([r[3] for r in h.rrset_texts(m)], [REAL], name)
            ports.append(obs.port_of(name))
        s1 = d.stats()
        self.assertEqual(obs.forged_sent, 3)
        self.assertEqual(s1["upstream_dropped"] - s0["upstream_dropped"], 3,
                         "each answer with the right id and another question "
                         "dropped and counted")
        # each such answer retired its socket: the next query, a new port
        self.assertEqual(s1["upstream_udp_retired"] - s0["upstream_udp_retired"], 3, s1)
        self.assertEqual(len(set(ports)), 3, "one socket per query here: %s" % ports)
        up = [u for u in s1["upstreams"] if u["url"] == obs.url()]
        self.assertEqual(len(up), 1, s1["upstreams"])
        self.assertGreaterEqual(up[0]["dropped"], 3, up[0])
        log("ok: 3 answers with the right id and another question dropped "
            "(upstream_dropped +3); the client got the real answer")

    def test_loopback_socket_carries_k_queries(self):
        """pool.udp-socket-queries 10, one worker, 30 names one after the
        other: three ports, ten queries in a row from each, every query
        with its own random id; by default (256) all 30 from one port."""
        for k in (10, None):
            obs = self.start_observer()
            cfg = h.base_config(pool={"udp-socket-queries": k} if k else {})
            d = self.start_dnsveil(upstream=[obs.url()], config=cfg, workers=1)
            names = ["%s.example.test." % h.unique_label("k%02d-" % i) for i in range(30)]
            for n in names:
                m = h.udp_query(d.port, n, "A")
                self.assertEqual([r[3] for r in h.rrset_texts(m)], [REAL], n)
            s1 = d.stats()
            seen = obs.seen(set(names))
            self.assertEqual(len(seen), 30, seen)
            ids = [i for _, i in seen]
            # every UDP query the observer got, the start-up checks' too
            with obs._lock:
                ports = [p for p, _, _ in obs.queries]
            n = len(ports)
            log("udp-socket-queries %s: %d ports for %d queries, %d distinct ids"
                % (k or "default", len(set(ports)), n, len(set(ids))))
            want_ports = -(-n // k) if k else 1
            self.assertEqual(len(set(ports)), want_ports, ports)
            if k:
                for i in range(0, n, k):
                    self.assertEqual(len(set(ports[i:i + k])), 1,
                                     "%d in a row on one socket: %s" % (k, ports))
            self.assertEqual(s1["upstream_udp_sockets"], want_ports, s1)
            # a new random id per query, as with a socket per query
            self.assertGreaterEqual(len(set(ids)), 28, "ids: %s" % ids)
            self.assertGreater(max(ids) - min(ids), 16384, "ids: %s" % ids)
            near = sum(1 for a, b in zip(ids, ids[1:]) if abs(a - b) < 256)
            self.assertLessEqual(near, 3, "ids close to the one before: %s" % ids)
            self.stop_dnsveil(d)
            obs.stop()

    def late_answer_during_next_query(self, scheme):
        obs = self.start_observer(hold=30)
        # the UDP attempt gives up after 300 ms and asks over TCP
        cfg = h.base_config(pool={"timeout-ms": 300, "hedge-delay-ms": 2000})
        d = self.start_dnsveil(upstream=[obs.url(scheme)], config=cfg, workers=1)
        s0 = d.stats()
        late = "late-%s.example.test" % h.unique_label("l")
        m = h.udp_query(d.port, late, "A", timeout=h.scaled(5))
        self.assertEqual([r[3] for r in h.rrset_texts(m)], [REAL],
                         "the late name answered over TCP")
        # the next query goes out on the same socket; the late answer to
        # the first (its id and question, FORGED) comes just before its own
        nxt = "%s.example.test" % h.unique_label("n")
        m = h.udp_query(d.port, nxt, "A", timeout=h.scaled(5))
        self.assertEqual([r[3] for r in h.rrset_texts(m)], [REAL], nxt)
        self.assertEqual(obs.port_of(nxt), obs.port_of(late),
                         "the socket of the late query carried the next one")
        self.assertEqual(obs.late_sent, 1)
        s1 = d.stats()
        self.assertEqual(s1["upstream_dropped"] - s0["upstream_dropped"], 1, s1)
        self.assertEqual(s1["upstream_udp_retired"] - s0["upstream_udp_retired"], 1, s1)
        # retired: the query after comes from a new port
        third = "%s.example.test" % h.unique_label("t")
        m = h.udp_query(d.port, third, "A", timeout=h.scaled(5))
        self.assertEqual([r[3] for r in h.rrset_texts(m)], [REAL], third)
        self.assertNotEqual(obs.port_of(third), obs.port_of(nxt))
        self.assertEqual(h.udp_query(d.port, late, "A").answer[0][0].address, REAL,
                         "the cache holds the TCP answer, not the late one")
        log("ok (%s://): a late answer that came while its socket carried the next "
            "query was dropped and retired the socket; the next query answered right"
            % scheme)

    def test_late_answer_during_next_query_udp(self):
        self.late_answer_during_next_query("udp")

    def test_late_answer_during_next_query_loopback_tcp(self):
        # the UDP path of a loopback tcp:// upstream (pool.loopback-udp)
        self.late_answer_during_next_query("tcp")

    def test_late_answer_on_idle_socket(self):
        obs = self.start_observer(hold=1.0)
        cfg = h.base_config(pool={"timeout-ms": 300, "hedge-delay-ms": 2000})
        d = self.start_dnsveil(upstream=[obs.url()], config=cfg, workers=1)
        s0 = d.stats()
        late = "late-%s.example.test" % h.unique_label("i")
        m = h.udp_query(d.port, late, "A", timeout=h.scaled(5))
        self.assertEqual([r[3] for r in h.rrset_texts(m)], [REAL])
        # no query in flight when the late answer comes (after 1 s)
        h.wait_for(lambda: obs.late_sent == 1, h.scaled(5), what="the late answer sent")
        h.wait_for(lambda: d.stats()["upstream_udp_retired"] - s0["upstream_udp_retired"] == 1,
                   h.scaled(3), what="the socket retired by the late answer")
        s1 = d.stats()
        self.assertEqual(s1["upstream_dropped"] - s0["upstream_dropped"], 1, s1)
        nxt = "%s.example.test" % h.unique_label("n")
        m = h.udp_query(d.port, nxt, "A", timeout=h.scaled(5))
        self.assertEqual([r[3] for r in h.rrset_texts(m)], [REAL], nxt)
        self.assertNotEqual(obs.port_of(nxt), obs.port_of(late), "a new socket")
        self.assertEqual(d.stats()["upstream_udp_sockets"] - s1["upstream_udp_sockets"], 1)
        log("ok: a late answer on an idle socket was dropped, counted, and retired it")

    def test_udp_socket_queries_validated(self):
        for bad in ("0", "65536", "-1", "many"):
            how, out = h.check_config_key("pool: { udp-socket-queries: %s }" % bad)
            self.assertEqual(how, "rejected", out)
            self.assertIn("udp-socket-queries", out)
            log("udp-socket-queries %s: %s" % (bad, out.splitlines()[-1]))
        for good in ("1", "65535"):
            how, out = h.check_config_key("pool: { udp-socket-queries: %s }" % good)
            self.assertEqual(how, "ok", out)

    def test_warning_for_plain_upstreams_outside_local_networks(self):
        # --check-config: 192.0.2.1 (a documentation address, never
        # contacted) is warned about, loopback and private ones are not
        tmp = tempfile.TemporaryDirectory(prefix="dv-warn-")
        self.addCleanup(tmp.cleanup)
        conf = os.path.join(tmp.name, "warn.yaml")
        with open(conf, "w") as f:
            f.write('listen: ["dns://127.0.0.1:%d"]\n'
                    'upstream: ["udp://127.0.0.1:5335", "tcp://[::1]:5335", '
                    '"udp://[fd00:db8::1]:53"]\n'
                    'fallback: ["udp://192.0.2.1:53", "tcp://[2001:db8::53]:53", '
                    '"tls://198.51.100.1:853#dns.example"]\n' % h.free_port())
        r = h.run_dnsveil(["--check-config", "-c", conf])
        self.assertEqual(r.returncode, 0, r.stderr)
        warned = [ln for ln in r.stderr.splitlines() if "warning" in ln]
        self.assertEqual(len(warned), 2, r.stderr)
        self.assertIn("'udp://192.0.2.1:53'", warned[0])
        self.assertIn("'tcp://[2001:db8::53]:53'", warned[1])
        for w in warned:
            self.assertIn("spoofed off-path", w)
            self.assertIn("tls://, https:// or quic://", w)
        self.assertNotIn("127.0.0.1:5335", r.stderr)
        self.assertNotIn("fd00", r.stderr)
        self.assertNotIn("198.51.100.1", r.stderr)

        # at start-up: udp://192.0.2.1 as a fallback that is never reached
        # (the local observer answers at once, the hedge delay is long)
        obs = self.start_observer()
        d = self.start_dnsveil(upstream=[obs.url()], fallback=["udp://192.0.2.1:53"],
                               config=h.base_config(pool={"hedge-delay-ms": 2500}))
        d.wait_log(r"warn.*fallback 'udp://192\.0\.2\.1:53' is outside loopback "
                   r"and private networks.*spoofed off-path")
        self.assertEqual(d.log_lines(r"upstream 'udp://127\.0\.0\.1"), [])
        s = d.stats()
        self.assertEqual(s["fallback_queries"], 0, "the fallback was never asked")
        log("ok: udp://192.0.2.1 warned about (--check-config and start-up), "
            "udp://127.0.0.1 and private addresses not")


if __name__ == "__main__":
    h.main()
