"""`/usr/bin/python3 -m dvtest selftest` (in tests/integration): check the
Unbound, SlowAuthority, kdig and dnsperf parts of the harness against
Unbound directly (no dnsveil needed)."""

import os
import shutil
import socket
import struct
import sys
import tempfile
import time

import dns.message

import dvtest as dv
from dvtest import (NUM_HOSTS, Kresd, SlowAuthority, Unbound, dnsperf, kdig, log, make_query,
                    recv_msg, rrset_texts, txt_value, udp_query, unique_label)


def kresd_checks(check, slow):
    """The Kresd of DV_RESOLVER=kresd: the zone through its authority, the
    slow zone, TC, out-of-order TCP, REFUSED outside, its query log."""
    kr = Kresd(whoami="kr", slow=slow, local_data=[("short.example.test", 2, "A",
                                                     "192.0.2.77")]).start()
    try:
        p = kr.port
        r = kdig(p, "www.example.test", "A")
        check(r.rcode == 0 and r.records()[0][3] == "192.0.2.1", "kresd www: %s" % r.records())
        m = udp_query(p, unique_label("x") + ".whoami.example.test", "TXT")
        check(txt_value(m) == "kr", "kresd whoami: %s" % txt_value(m))
        r = kdig(p, "big.example.test", "TXT", "+noedns", "+ignore")
        check(r.tc, "kresd: big TXT truncated over UDP without EDNS")
        for _ in range(2):
            m = udp_query(p, "short.example.test")
            check(rrset_texts(m)[0][2] == 2, "kresd local data, full TTL: %s" % rrset_texts(m))
        m = udp_query(p, "example.com")
        check(m.rcode() == 5, "kresd refuses names outside the zone: rcode %d" % m.rcode())
        s = socket.create_connection(("127.0.0.1", p), timeout=5)
        q1 = make_query(unique_label("x") + ".slow.example.test", qid=1111)
        q2 = make_query("www.example.test", qid=2222)
        s.sendall(struct.pack("!H", len(q1.to_wire())) + q1.to_wire()
                  + struct.pack("!H", len(q2.to_wire())) + q2.to_wire())
        first = dns.message.from_wire(recv_msg(s))
        second = dns.message.from_wire(recv_msg(s))
        s.close()
        check(first.id == 2222 and second.id == 1111,
              "kresd answers pipelined TCP out of order (%d then %d)" % (first.id, second.id))
        check(kr.queries_for("short.example.test", "A") == 2,
              "kresd query log: %d" % kr.queries_for("short.example.test", "A"))
        kr.kill()
        kr.start()
        check(udp_query(p, "www.example.test").rcode() == 0, "kresd restarted on same port")
    finally:
        kr.cleanup()


def selftest():
    """Check the Unbound, Kresd, SlowAuthority, kdig and dnsperf parts of
    the harness against the resolvers directly (no dnsveil needed)."""
    failures = []

    def check(cond, what):
        log(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures.append(what)

    slow = SlowAuthority(delay=1.0).start()
    ub = Unbound(whoami="local", for_downstream=True).start()
    us = Unbound(whoami="slowtest", slow=slow).start()
    fb = Unbound(whoami="fallback").start()
    try:
        p = ub.port
        r = kdig(p, "www.example.test", "A")
        check(r.rcode == 0 and ("www.example.test.", "A", 300, "192.0.2.1") in r.records(),
              "kdig A www.example.test: %s" % r.records())
        r = kdig(p, "www.example.test", "AAAA", tcp=True)
        check(r.rcode == 0 and r.records()[0][3] == "2001:db8::1", "kdig +tcp AAAA: %s" % r.records())
        r = kdig(p, "alias.example.test", "A")
        check([x[1] for x in r.records()] == ["CNAME", "CNAME", "A"], "CNAME chain: %s" % r.records())
        r = kdig(p, "nope.example.test", "A")
        check(r.status == "NXDOMAIN" and r.records("authority")[0][1] == "SOA",
              "NXDOMAIN with SOA: %s %s" % (r.status, r.records("authority")))
        r = kdig(p, "big.example.test", "TXT", "+ignore")
        check(r.tc, "big TXT truncated over UDP without EDNS (size %s)" % r.size)
        r = kdig(p, "big.example.test", "TXT", tcp=True)
        check(not r.tc and r.size > 3000, "big TXT over TCP: %s bytes" % r.size)
        # (kdig lowercases the names it sends: case tests use dnspython)
        m = udp_query(p, "WwW.Example.TEST")
        check(m.question[0].name.to_text() == "WwW.Example.TEST.",
              "unbound keeps case: %s" % m.question[0].name)
        m = udp_query(p, "x.whoami.example.test", "TXT")
        check(txt_value(m) == "local", "whoami local: %s" % txt_value(m))
        m = udp_query(fb.port, "x.whoami.example.test", "TXT")
        check(txt_value(m) == "fallback", "whoami fallback: %s" % txt_value(m))
        n0 = ub.num_queries()
        udp_query(p, "h7.example.test")
        check(ub.num_queries() == n0 + 1, "unbound-control total.num.queries %d -> %d" % (
            n0, ub.num_queries()))
        # slow name through the stub-zone
        t0 = time.monotonic()
        m = udp_query(us.port, unique_label("x") + ".slow.example.test", timeout=5)
        dt = time.monotonic() - t0
        check(m.rcode() == 0 and rrset_texts(m) and rrset_texts(m)[0][3] == "192.0.2.200"
              and 0.9 <= dt < 2.5, "slow name answered in %.2fs: %s" % (dt, rrset_texts(m)))
        # Unbound answers pipelined TCP queries out of order
        s = socket.create_connection(("127.0.0.1", us.port), timeout=5)
        q1 = make_query(unique_label("x") + ".slow.example.test", qid=1111)
        q2 = make_query("www.example.test", qid=2222)
        s.sendall(struct.pack("!H", len(q1.to_wire())) + q1.to_wire()
                  + struct.pack("!H", len(q2.to_wire())) + q2.to_wire())
        first = dns.message.from_wire(recv_msg(s))
        second = dns.message.from_wire(recv_msg(s))
        s.close()
        check(first.id == 2222 and second.id == 1111,
              "unbound answers pipelined TCP out of order (%d then %d)" % (first.id, second.id))
        # kill and restart keep the port
        ub.kill()
        check(not ub.alive(), "unbound killed")
        ub.start()
        check(udp_query(p, "www.example.test").rcode() == 0, "unbound restarted on same port")
        # dnsperf against Unbound directly
        d = tempfile.mkdtemp(prefix="dv-selftest-")
        qf = os.path.join(d, "queries.txt")
        with open(qf, "w") as f:
            for i in range(NUM_HOSTS):
                f.write("h%d.example.test A\n" % i)
        res, out = dnsperf(p, qf, "-c", "4", "-l", "3", "-Q", "2000")
        check(res.get("lost") == 0 and res.get("completed", 0) > 1000,
              "dnsperf udp against unbound: %s" % res)
        res, out = dnsperf(p, qf, "-m", "tcp", "-c", "4", "-l", "2", "-Q", "1000")
        check(res.get("lost") == 0 and res.get("completed", 0) > 500,
              "dnsperf tcp against unbound: %s" % res)
        shutil.rmtree(d, ignore_errors=True)
        check(slow.count >= 2, "slow authority saw %d queries" % slow.count)
        kresd_checks(check, slow)
    finally:
        ub.cleanup()
        us.cleanup()
        fb.cleanup()
        slow.stop()
    log("selftest: %d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "selftest":
        sys.exit(selftest())
    print(__doc__)
    print(dv.__doc__)
