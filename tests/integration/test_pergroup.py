#!/usr/bin/python3
"""Per-group upstreams (README "Per-group upstreams"): a group with its own
`upstream:` is resolved by its own resolvers, and the cache keeps the
answers of different upstream sets apart.

Two real Unbound instances on loopback answer the same names differently
(local-data): "adult" 192.0.2.1, the top-level upstream, and "kids"
192.0.2.2, groups.kids.upstream.  Clients of the kids group are told apart
by the client ID in the DoH path (kdig +https=/dns-query/kid-1), in the
TLS SNI (kdig +tls-sni=kid-1.dns.test) and by the address they send from
(dnspython from 127.0.0.2); the same clients without an ID, or from
127.0.0.1, are the default group.  Each pair is asked in both orders,
several times: the kids group always gets its resolver's answer and the
default group the other, and each resolver's query log shows it was asked
each name exactly once (the rest are cache hits, each in its own set)."""

import os
import signal
import sys
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

import dns.query  # noqa: E402
import dns.rcode  # noqa: E402

h.ensure_dev_certs()

DEFAULT_ADDR, KIDS_ADDR = "192.0.2.1", "192.0.2.2"
KINDS = ("doh", "dot", "cidr")
ORDERS = ("dk", "kd")  # default first then kids, and kids first
NAMES = ["%s-%s.pg.example.test" % (k, o) for k in KINDS for o in ORDERS]
SHORT = "short.pg.example.test"  # TTL 2: serve-stale and prefetch
EDE_STALE = 3


def local_data(addr):
    return [(n, 300, "A", addr) for n in NAMES] + [(SHORT, 2, "A", addr)]


def group_yaml(kids_url, extra_groups="", extra_clients=""):
    return """groups:
  default: {}
  kids:
    upstream: ["%s"]
%sclients:
  - { id: "kid-*", group: kids }
  - { cidr: 127.0.0.2, group: kids }
%spolicy:
  server-names: [dns.test]
""" % (kids_url, extra_groups, extra_clients)


class PerGroup(h.IntegrationTest):

    def start(self, config=None, extra_groups="", extra_clients="", admin=False, extra_top=""):
        self.adult = self.start_unbound(whoami="adult", local_data=local_data(DEFAULT_ADDR))
        self.kids = self.start_unbound(whoami="kids", local_data=local_data(KIDS_ADDR))
        extra_groups = extra_groups.replace("@KIDS@", self.kids.url("tcp")).replace(
            "@ADULT@", self.adult.url("tcp"))
        extra = extra_top + group_yaml(self.kids.url("tcp"), extra_groups, extra_clients)
        if admin:
            self.admin_port = h.free_port()
            extra += "admin:\n  listen: [\"http://127.0.0.1:%d\"]\n" % self.admin_port
        self.dv = h.Dnsveil(listen=["dns", "tls", "https"], upstream=[self.adult],
                            config=config or h.doh_config(), extra_yaml=extra,
                            name="pergroup")
        self._dnsveils.append(self.dv)
        self.dv.start()

    # ---- the three client kinds, each as the kids group or the default

    def ask(self, kind, kids, name):
        """The A records of `name` asked as `kind` (doh, dot, cidr), as a
        client of the kids group or not; asserts NOERROR."""
        if kind == "cidr":
            m = dns.query.udp(h.make_query(name, "A"), "127.0.0.1", port=self.dv.port,
                              source="127.0.0.2" if kids else "127.0.0.1",
                              timeout=h.scaled(3))
            self.assertEqual(m.rcode(), dns.rcode.NOERROR, m)
            return h.a_records(m)
        if kind == "dot":
            port = self.dv.tls_port
            opts = ["+tls-sni=%s" % ("kid-1.dns.test" if kids else "dns.test")]
        else:
            port = self.dv.https_port
            opts = ["+https=%s" % ("/dns-query/kid-1" if kids else "/dns-query")]
        r = h.kdig_tls(port, [(name, "A")], *opts)
        self.assertEqual(r.rc, 0, r)
        return [x[3] for x in r.records()]

    def queries(self, ub, name):
        return ub.queries_for(name, "A")

    # ---- tests

    def test_groups_get_their_own_resolvers_answers(self):
        """Default then kids, and kids then default, three rounds each, over
        DoH (path ID), DoT (SNI) and Do53 (source address): never the other
        set's answer; each resolver asked each name once."""
        self.start()
        for kind in KINDS:
            for order in ORDERS:
                name = "%s-%s.pg.example.test" % (kind, order)
                for rnd in range(3):
                    for kids in ((False, True) if order == "dk" else (True, False)):
                        want = KIDS_ADDR if kids else DEFAULT_ADDR
                        got = self.ask(kind, kids, name)
                        self.assertEqual(got, [want], "%s %s round %d, %s group" % (
                            kind, name, rnd, "kids" if kids else "default"))
                log("ok: %s %s: kids %s, default %s, 3 rounds" % (
                    kind, order, KIDS_ADDR, DEFAULT_ADDR))
        # each set asked each name once: the repeats were cache hits of
        # the client's own set
        for name in NAMES:
            h.wait_for(lambda: self.queries(self.kids, name) >= 1
                       and self.queries(self.adult, name) >= 1, h.scaled(5),
                       what="both resolvers' query logs show %s" % name)
            self.assertEqual(self.queries(self.kids, name), 1, name)
            self.assertEqual(self.queries(self.adult, name), 1, name)
        st = self.dv.stats()
        self.assertEqual(st["policy"]["groups"]["kids"]["queries"], 3 * 2 * 3)
        self.assertGreaterEqual(st["cache_hits"], 3 * 2 * 2 * 3 - 12)
        sets = [(u.get("set"), u["url"]) for u in st["upstreams"]]
        self.assertEqual(sets, [(None, self.adult.url("tcp")), ("kids", self.kids.url("tcp"))],
                         st["upstreams"])
        self.dv.wait_log(r"upstream tcp://127\.0\.0\.1:%d \(set kids\)" % self.kids.port)

    def test_down_set_fails_only_its_group(self):
        """The kids resolver dead: the kids group gets SERVFAIL (and keeps
        getting it, from its own SERVFAIL mark), the default group its
        answers all along; /metrics shows the set's server with a set
        label."""
        self.start(admin=True)
        self.kids.kill()
        log("killed the kids resolver")
        for kind in KINDS:
            name = "%s-dk.pg.example.test" % kind
            for rnd in range(2):
                self.assertEqual(self.ask(kind, False, name), [DEFAULT_ADDR])
                if kind == "cidr":
                    m = dns.query.udp(h.make_query(name, "A"), "127.0.0.1", port=self.dv.port,
                                      source="127.0.0.2", timeout=h.scaled(6))
                    self.assertEqual(m.rcode(), dns.rcode.SERVFAIL, m)
                    self.assertTrue(h.ede_codes(m), m)
                else:
                    opts = ["+tls-sni=kid-1.dns.test"] if kind == "dot" else \
                        ["+https=/dns-query/kid-1"]
                    port = self.dv.tls_port if kind == "dot" else self.dv.https_port
                    r = h.kdig_tls(port, [(name, "A")], *opts, timeout=h.scaled(6))
                    self.assertEqual(r.json.get("RCODE"), dns.rcode.SERVFAIL, r)
                self.assertEqual(self.ask(kind, False, name), [DEFAULT_ADDR])
        log("ok: kids SERVFAIL, default answered, over DoH, DoT and Do53")
        self.dv.wait_log(r"upstream tcp://127\.0\.0\.1:%d \(set kids\) is down" % self.kids.port)
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.admin_port,
                                      timeout=h.scaled(5)).read().decode()
        kids_url = self.kids.url("tcp")
        self.assertIn('dnsveil_server_state{upstream="%s",group="local",set="kids",'
                      'state="down"} 1' % kids_url, body)
        self.assertIn('dnsveil_server_state{upstream="%s",group="local",state="up"} 1'
                      % self.adult.url("tcp"), body)

    def test_stale_and_prefetch_through_the_groups_set(self):
        """Serve-stale and prefetch refresh through the set the answer came
        from: the kids resolver dead, the kids group gets its own stale
        answer (EDE 3), never the default's, while the default group is
        refreshed by its resolver; a popular kids name is prefetched from
        the kids resolver only."""
        cfg = h.doh_config(cache={"stale-max-age-s": 3600, "stale-answer-timeout-ms": 800,
                                  "prefetch-hits": 3, "prefetch-window-pct": 50})
        self.start(config=cfg)
        # prefetch: kids ask SHORT (TTL 2) often; the kids resolver is
        # asked again before it expires, the default one never
        seen = set()
        h.wait_for(lambda: (seen.update(self.ask("cidr", True, SHORT)) or
                            self.dv.stats()["prefetches"] >= 1), h.scaled(10), interval=0.1,
                   what="a prefetch of %s from the kids resolver" % SHORT)
        h.wait_for(lambda: self.queries(self.kids, SHORT) >= 2, h.scaled(5),
                   what="the kids resolver's log of the prefetch")
        self.assertEqual(seen, {KIDS_ADDR})
        self.assertEqual(self.queries(self.adult, SHORT), 0)
        log("ok: %s prefetched from the kids resolver only" % SHORT)
        # stale: both groups have SHORT cached; the kids resolver dies
        self.assertEqual(self.ask("cidr", False, SHORT), [DEFAULT_ADDR])
        self.kids.kill()

        def kids_stale():
            m = dns.query.udp(h.make_query(SHORT, "A"), "127.0.0.1", port=self.dv.port,
                              source="127.0.0.2", timeout=h.scaled(5))
            self.assertEqual(m.rcode(), dns.rcode.NOERROR, m)
            self.assertEqual(h.a_records(m), [KIDS_ADDR], m)
            return EDE_STALE in h.ede_codes(m)
        h.wait_for(kids_stale, h.scaled(10), interval=0.2, what="a stale kids answer")
        self.assertEqual(self.ask("cidr", False, SHORT), [DEFAULT_ADDR])
        self.assertEqual(self.ask("dot", True, SHORT), [KIDS_ADDR])
        log("ok: kids resolver dead: the kids group's own stale answer, the default fresh")

    def test_identical_lists_share_a_set(self):
        """Two groups naming the same resolver share its set (one cache,
        one series of server metrics)."""
        self.start(extra_groups='  school:\n    upstream: ["@KIDS@"]\n',
                   extra_clients='  - { id: "school-*", group: school }\n')
        name = NAMES[0]
        r = h.kdig_tls(self.dv.tls_port, [(name, "A")], "+tls-sni=school-1.dns.test")
        self.assertEqual([x[3] for x in r.records()], [KIDS_ADDR], r)
        for kind in KINDS:
            self.assertEqual(self.ask(kind, True, name), [KIDS_ADDR])
            self.assertEqual(self.ask(kind, False, name), [DEFAULT_ADDR])
        h.wait_for(lambda: self.queries(self.kids, name) >= 1, h.scaled(5),
                   what="the kids resolver's log")
        self.assertEqual(self.queries(self.kids, name), 1)
        st = self.dv.stats()
        self.assertEqual(st["policy"]["groups"]["school"]["queries"], 1)
        self.assertEqual([u.get("set") for u in st["upstreams"]], [None, "kids"], st["upstreams"])
        log("ok: school and kids share one upstream set and its cache")

    def test_fallback_and_internal_names_per_set(self):
        """A kids set with a fallback of its own (here the adult resolver,
        to tell them apart): with its upstream dead, an ordinary name is
        answered by its fallback, an internal: name never reaches that
        fallback (SERVFAIL with an EDE), while the default group, whose
        set has no fallback, is answered by its own resolver throughout."""
        self.start(extra_groups='    fallback: ["@ADULT@"]\n', extra_top="internal: [int.pg.example.test]\n")
        self.kids.kill()
        name = NAMES[0]
        self.assertEqual(self.ask("dot", True, name), [DEFAULT_ADDR])  # the set's fallback
        inner = "doh-kd.int.pg.example.test"
        r = h.kdig_tls(self.dv.tls_port, [(inner, "A")], "+tls-sni=kid-1.dns.test",
                       timeout=h.scaled(6))
        self.assertEqual(r.json.get("RCODE"), dns.rcode.SERVFAIL, r)
        m = dns.query.udp(h.make_query(inner, "A"), "127.0.0.1", port=self.dv.port,
                          source="127.0.0.2", timeout=h.scaled(6))
        self.assertEqual(m.rcode(), dns.rcode.SERVFAIL, m)
        self.assertTrue(h.ede_codes(m), m)
        # the default group's set: the same resolver, as its local one
        m = dns.query.udp(h.make_query(inner, "A"), "127.0.0.1", port=self.dv.port,
                          source="127.0.0.1", timeout=h.scaled(6))
        self.assertEqual(m.rcode(), dns.rcode.NXDOMAIN, m)
        h.wait_for(lambda: self.queries(self.adult, inner) >= 1, h.scaled(5),
                   what="the default group's query in the adult resolver's log")
        self.assertEqual(self.queries(self.adult, inner), 1,
                         "the kids set's fallback was asked an internal name")
        log("ok: kids' own fallback answers ordinary names, never internal ones")

    def test_reload_refused(self):
        """SIGHUP with a changed groups.kids.upstream: the reload is
        refused whole (the sets are numbered once, at start; the other
        upstream keys reload live), it is counted as a failed reload, and
        the kids group keeps its running resolver."""
        self.start()
        with open(self.dv.conf_path) as f:
            text = f.read()
        self.assertIn(self.kids.url("tcp"), text)
        tmp = self.dv.conf_path + ".new"
        with open(tmp, "w") as f:
            f.write(text.replace(self.kids.url("tcp"), self.adult.url("tcp")))
        os.rename(tmp, self.dv.conf_path)
        off = len(self.dv.stderr_text())
        self.dv.proc.send_signal(signal.SIGHUP)
        self.dv.wait_log(r"SIGHUP: configuration refused", start=off)
        logged = self.dv.stderr_text()[off:]
        self.assertRegex(logged, r"groups\.\*\.upstream/fallback: a group's "
                                 r"upstream set changed, which takes a restart")
        self.assertNotIn("configuration checked and reloaded", logged)
        self.assertEqual(self.ask("dot", True, NAMES[0]), [KIDS_ADDR])
        self.assertEqual(self.ask("dot", False, NAMES[0]), [DEFAULT_ADDR])
        log("ok: SIGHUP with a changed group set is refused, the sets stay")


class PerGroupConfig(h.IntegrationTest):
    """`--check-config` on groups.NAME.upstream and .fallback."""

    def check(self, text):
        return h.check_config_text(text)

    def test_errors(self):
        rc, out = self.check("groups:\n  kids:\n    upstream: [\"tcp://127.0.0.1:5336\"]\n")
        self.assertEqual(rc, 0, out)
        self.assertIn("configuration OK", out)
        rc, out = self.check("groups:\n  kids:\n    upstream: [\"ftp://127.0.0.1:5336\"]\n")
        self.assertEqual(rc, 1, out)
        self.assertIn("FILE:6: groups.kids.upstream: 'ftp://127.0.0.1:5336': unknown scheme 'ftp'",
                      out)
        rc, out = self.check("groups:\n  kids:\n    upstream: [\"tls://127.0.0.1:853\"]\n")
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"FILE:6: groups\.kids\.upstream: .*#NAME")
        rc, out = self.check("groups:\n  kids:\n    fallback: [\"tcp://127.0.0.1:5336\"]\n")
        self.assertEqual(rc, 1, out)
        self.assertIn("FILE:6: groups.kids.fallback: needs groups.kids.upstream", out)
        rc, out = self.check("groups:\n  kids:\n    upstream: [\"tcp://192.0.2.53:53\"]\n")
        self.assertEqual(rc, 0, out)
        self.assertIn("groups.kids.upstream 'tcp://192.0.2.53:53' is outside loopback", out)


if __name__ == "__main__":
    h.main()
