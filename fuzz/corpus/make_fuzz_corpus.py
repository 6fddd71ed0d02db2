#!/usr/bin/python3
"""Seed corpora for fuzz/fuzz_cache.c, fuzz_config.c, fuzz_upstream.c,
fuzz_stream.c and fuzz_doh_client.c: writes
fuzz/corpus/{cache,config,upstream,stream,doh_client}/*.

Plain python3 (no dnspython needed): the messages are small and built byte
by byte, so each seed says exactly which path it is for.  The output is
deterministic; re-running the script changes nothing unless it changed.
Each corpus directory is emptied of the seeds this script owns (*.bin,
*.yaml, *.txt) and rewritten.

    /usr/bin/python3 fuzz/corpus/make_fuzz_corpus.py

The input layouts are described at the top of each fuzz_<parser>.c.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

QR, AA, TC, RD, RA, AD, CD = (0x8000, 0x0400, 0x0200, 0x0100, 0x0080,
                              0x0020, 0x0010)
T_A, T_NS, T_CNAME, T_SOA, T_TXT, T_AAAA, T_OPT = 1, 2, 5, 6, 16, 28, 41
C_IN = 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5


# ---------------------------------------------------------------- DNS bytes

def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def name(text):
    out = b""
    for label in text.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def header(id_, flags, qd=1, an=0, ns=0, ar=0):
    return u16(id_) + u16(flags) + u16(qd) + u16(an) + u16(ns) + u16(ar)


def question(qname, qtype=T_A, qclass=C_IN):
    return name(qname) + u16(qtype) + u16(qclass)


def rr(owner, rtype, ttl, rdata, rclass=C_IN):
    """owner: bytes (a wire name or a pointer such as b'\\xc0\\x0c')."""
    return owner + u16(rtype) + u16(rclass) + u32(ttl) + u16(len(rdata)) + rdata


PTR_Q = b"\xc0\x0c"  # the question name


def opt(udp=1232, do=False, ext_rcode=0, options=b""):
    ttl = (ext_rcode << 24) | (0x8000 if do else 0)
    return b"\0" + u16(T_OPT) + u16(udp) + u32(ttl) + u16(len(options)) + options


def soa_rdata(ttl_min=300, serial=1):
    return (name("ns.example.test") + name("host.example.test") +
            u32(serial) + u32(7200) + u32(3600) + u32(1209600) + u32(ttl_min))


def a_rdata(i=1):
    return bytes([192, 0, 2, i & 0xff])


def txt_rdata(n, ch="x"):
    return bytes([n]) + (ch * n).encode()


def response(qname, qtype=T_A, id_=0x1234, flags=QR | RD | RA, answers=(),
             authority=(), additional=(), edns=None):
    ar = list(additional) + ([edns] if edns is not None else [])
    return (header(id_, flags, 1, len(answers), len(authority), len(ar)) +
            question(qname, qtype) + b"".join(answers) +
            b"".join(authority) + b"".join(ar))


def query(qname, qtype=T_A, id_=0x4242, flags=RD, edns=None):
    ar = [edns] if edns is not None else []
    return header(id_, flags, 1, 0, 0, len(ar)) + question(qname, qtype) + \
        b"".join(ar)


def framed(*msgs):
    return b"".join(u16(len(m)) + m for m in msgs)


# ---------------------------------------------------------------- writing

def write_dir(sub, seeds):
    d = os.path.join(HERE, sub)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        # regress_*: crash reproducers moved in by hand (fuzz/README.md)
        if f.startswith("regress_") and f not in seeds:
            continue
        if f.endswith((".bin", ".yaml", ".txt")):
            os.unlink(os.path.join(d, f))
    for fname, data in sorted(seeds.items()):
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data)
    print("%-10s %3d seeds" % (sub, len(seeds)))


# ---------------------------------------------------------------- cache

def cache_seeds():
    s = {}

    def rec(flags, answer):
        return bytes([flags]) + u16(len(answer)) + answer

    def inp(b0, b1, *records):
        return bytes([b0, b1]) + b"".join(records)

    www = "www.example.test"
    pos = response(www, answers=[rr(PTR_Q, T_A, 3600, a_rdata(1)),
                                 rr(PTR_Q, T_A, 30, a_rdata(2))],
                   edns=opt())
    # flags: 1 EDNS, 2 DO, 4 CD, 8 padding, 16 RD, 32-64 case, 128 cache B
    s["pos_plain.bin"] = inp(0, 5, rec(0x10, pos))
    s["pos_edns.bin"] = inp(0, 5, rec(0x11, pos))
    s["pos_edns_do_cd.bin"] = inp(0, 5, rec(0x17, pos))
    s["pos_padding.bin"] = inp(0, 5, rec(0x19, pos))
    s["pos_case.bin"] = inp(0, 5, rec(0x71, pos))
    s["pos_cacheB.bin"] = inp(0, 5, rec(0x91, pos))
    s["pos_wrap32.bin"] = inp(2, 40, rec(0x11, pos))
    s["pos_wrap31.bin"] = inp(1, 40, rec(0x11, pos))
    s["pos_time0.bin"] = inp(3, 200, rec(0x01, pos))
    s["pos_no_opt.bin"] = inp(0, 1, rec(0x01, response(
        www, answers=[rr(PTR_Q, T_A, 120, a_rdata(3))])))
    s["pos_ttl_topbit.bin"] = inp(0, 1, rec(0x01, response(
        www, answers=[rr(PTR_Q, T_A, 0x80000010, a_rdata(3)),
                      rr(PTR_Q, T_A, 60, a_rdata(4))])))
    s["pos_ttl_zero.bin"] = inp(0, 1, rec(0x81, response(
        www, answers=[rr(PTR_Q, T_A, 0, a_rdata(3))])))
    s["pos_ttl_big.bin"] = inp(0, 255, rec(0x01, response(
        www, answers=[rr(PTR_Q, T_A, 0x7fffffff, a_rdata(3))])))
    cname = response("alias.example.test",
                     answers=[rr(PTR_Q, T_CNAME, 300, name("www.example.test")),
                              rr(name("www.example.test"), T_A, 60,
                                 a_rdata(7))],
                     edns=opt(do=True))
    s["cname_chain.bin"] = inp(0, 9, rec(0x13, cname))
    nx = response("nope.example.test", flags=QR | RD | RA | NXDOMAIN,
                  authority=[rr(name("example.test"), T_SOA, 900,
                                soa_rdata(60))], edns=opt())
    s["nxdomain_soa.bin"] = inp(0, 30, rec(0x11, nx))
    s["nxdomain_soa_cacheB.bin"] = inp(0, 30, rec(0x91, nx))
    nodata = response(www, qtype=T_AAAA,
                      authority=[rr(name("example.test"), T_SOA, 30,
                                    soa_rdata(3600))])
    s["nodata_soa.bin"] = inp(0, 10, rec(0x00, nodata))
    s["nxdomain_no_soa.bin"] = inp(0, 1, rec(0x01, response(
        "nope.example.test", flags=QR | RD | RA | NXDOMAIN)))
    s["nx_cname_soa.bin"] = inp(0, 3, rec(0x01, response(
        "x.example.test", flags=QR | RA | NXDOMAIN,
        answers=[rr(PTR_Q, T_CNAME, 5, name("y.example.test"))],
        authority=[rr(name("example.test"), T_SOA, 900, soa_rdata(600))])))
    s["servfail.bin"] = inp(0, 1, rec(0x01, response(
        www, flags=QR | RD | RA | SERVFAIL, edns=opt())))
    s["truncated.bin"] = inp(0, 1, rec(0x01, response(
        www, flags=QR | RD | RA | TC, edns=opt())))
    s["opt_ext_rcode.bin"] = inp(0, 1, rec(0x01, response(
        www, answers=[rr(PTR_Q, T_A, 60, a_rdata(1))],
        edns=opt(ext_rcode=1))))
    s["opt_not_last.bin"] = inp(0, 1, rec(0x01, (
        header(0x1234, QR | RA, 1, 1, 0, 2) + question(www) +
        rr(PTR_Q, T_A, 60, a_rdata(1)) + opt() +
        rr(PTR_Q, T_A, 60, a_rdata(2)))))
    s["opt_with_ede.bin"] = inp(0, 1, rec(0x01, response(
        www, answers=[rr(PTR_Q, T_A, 60, a_rdata(1))],
        edns=opt(options=u16(15) + u16(2) + u16(3)))))
    s["opcode_notify.bin"] = inp(0, 1, rec(0x01, response(
        www, flags=QR | (4 << 11), answers=[rr(PTR_Q, T_A, 60,
                                                a_rdata(1))])))
    # the same key twice: the second replaces the first
    s["replace.bin"] = inp(0, 3, rec(0x01, pos), rec(0x01, response(
        www, answers=[rr(PTR_Q, T_A, 5, a_rdata(9))], edns=opt())))
    # several answers that do not fit together: eviction
    many = []
    for i in range(6):
        many.append(rec(0x01 | (0x80 if i % 2 else 0), response(
            "n%d.example.test" % i,
            answers=[rr(PTR_Q, T_TXT, 100 + i, txt_rdata(200, chr(97 + i)))
                     for _ in range(4)])))
    s["evict_many.bin"] = inp(0, 50, *many)
    # big: over every budget, and an answer over 1232 and 512 that fits
    s["too_big.bin"] = inp(0, 1, rec(0x01, response(
        "big.example.test", qtype=T_TXT,
        answers=[rr(PTR_Q, T_TXT, 300, txt_rdata(250)) for _ in range(30)])))
    s["truncate_512.bin"] = inp(0, 1, rec(0x09, response(
        "mid.example.test", qtype=T_TXT,
        answers=[rr(PTR_Q, T_TXT, 300, txt_rdata(200)) for _ in range(4)],
        edns=opt())))
    # 257 records: parses (DV_ELIMIT) but cannot be aged, not stored
    s["too_many_records.bin"] = inp(0, 1, rec(0x00, response(
        www, answers=[rr(PTR_Q, T_A, 60, a_rdata(i)) for i in range(257)])))
    # compression pointers in owners and RDATA
    s["compressed.bin"] = inp(0, 2, rec(0x01, response(
        "a.b.example.test", qtype=T_NS,
        answers=[rr(PTR_Q, T_NS, 60, b"\x02ns" + b"\xc0\x0e"),
                 rr(b"\x01x\xc0\x0c", T_A, 60, a_rdata(5))])))
    # an owner name that starts at the CLASS of the record before and runs
    # through its TTL (01 [TTL0] then TTL1 = 00: the root): legal, and the
    # served TTL must not turn it into another name
    hq = header(0x1234, QR | RD | RA, 1, 2, 0, 0) + question(www)
    x = len(hq) + 6  # the first record's TTL
    s["owner_through_ttl.bin"] = inp(0, 5, rec(0x01, (
        hq + rr(PTR_Q, T_A, 5, a_rdata(1)) +
        rr(bytes([0xc0 | ((x - 1) >> 8), (x - 1) & 0xff]), T_A, 300,
           a_rdata(2)))))
    s["garbage.bin"] = inp(0, 0, rec(0x01, b"\x12\x34\x81\x80" + b"\xff" * 20))
    s["empty.bin"] = b"\x00\x00"
    return s


# ---------------------------------------------------------------- config

def config_seeds():
    s = {}
    with open(os.path.join(ROOT, "conf", "dnsveil.yaml"), "rb") as f:
        s["dnsveil.yaml"] = f.read()
    with open(os.path.join(ROOT, "conf", "policy-example.yaml"), "rb") as f:
        s["policy-example.yaml"] = f.read()
    # the policy's tables: flow and block style, and what load_policy.c
    # and schema_policy.c refuse
    s["policy_tables.yaml"] = """lists:
  a: { source: /l/a.txt, format: hosts, refresh-s: 10 }
  b:
    source: /l/b.txt
    format: adblock
groups:
  default: { block: [a, b], allow: [], action: null, blocked-ttl: 5 }
  g2:
    block: [b]
    allow: a
    action: [192.0.2.1, "2001:db8::1"]
  g3: ~
clients:
  - { id: "k?d-*", group: g2 }
  - { cidr: [192.0.2.0/24, "2001:db8::/32"], listener: "udp://127.0.0.1:53", group: g3 }
  - group: default
policy: { server-names: [dns.test, Other.Example.], clients-only: true }
"""
    s["policy_bad_refs.yaml"] = ("lists: { a: { source: /x } }\n"
                                 "groups: { g: { block: [a, z] } }\n"
                                 "clients: [ { id: x, group: nope } ]\n")
    s["policy_bad_shapes.yaml"] = ("lists: [a, b]\ngroups: { g: [1] }\n"
                                   "clients: { id: x }\ninternal: [corp.example]\n")
    # local records (ldns parses each line at load) and internal names
    s["policy_records.yaml"] = """internal: [corp.example, "Lab.Corp.Example."]
policy: { internal-special-use: false, internal-records: true }
pool: { refused-is-final: false }
groups:
  default:
    records:
      - "intranet.corp.example. 300 IN A 192.0.2.10"
      - "Intranet.corp.example. IN AAAA 2001:db8::10"
      - "intranet.corp.example. 300 IN A 192.0.2.10"
      - "*.lab.corp.example. 30 IN TXT \\"a b\\" c"
      - "svc.corp.example. 300 IN HTTPS 1 . alpn=h2 port=8443 ipv4hint=192.0.2.11"
      - "_ldap._tcp.corp.example. 300 IN SRV 0 5 389 dc1.corp.example."
      - "alias.corp.example. 60 IN CNAME intranet.corp.example."
  kids: { records: "intranet.corp.example. 300 IN A 192.0.2.20" }
"""
    s["policy_records_bad.yaml"] = """groups:
  default:
    records:
      - "alias.corp.example. 60 IN CNAME intranet.corp.example."
      - "alias.corp.example. 60 IN A 192.0.2.1"
      - "rel 300 IN A 192.0.2.1"
      - "x. 300 IN NS y."
      - "a*.x. 300 IN A 192.0.2.1"
internal: ["."]
"""
    # groups.NAME.upstream / .fallback: identical lists share a set
    s["policy_upstreams.yaml"] = """upstream: [tcp://127.0.0.1:5335]
fallback: ["tls://192.0.2.53:853#dns.example"]
groups:
  kids: { upstream: ["tcp://127.0.0.1:5336"] }
  school: { upstream: "tcp://127.0.0.1:5336" }
  lab:
    upstream: [udp://127.0.0.1:5337, "https://[::1]:8443/dns-query#dns.test"]
    fallback: ["quic://192.0.2.54:853#dns.example"]
  plain: { block: [] }
clients: [ { id: "kid-*", group: kids }, { cidr: 127.0.0.2, group: lab } ]
"""
    s["policy_upstreams_bad.yaml"] = ("groups:\n  a: { fallback: [tcp://127.0.0.1:1] }\n"
                                      "  b: { upstream: [ftp://127.0.0.1:1] }\n"
                                      "  c: { upstream: [\"tls://127.0.0.1:853\"] }\n"
                                      "  d: { upstream: {x: 1} }\n")
    s["empty.yaml"] = ""
    s["null_doc.yaml"] = "~\n"
    s["minimal.yaml"] = ('listen: "dns://127.0.0.1:53"\n'
                         'upstream: "tcp://127.0.0.1:5335"\n')
    s["every_key.yaml"] = """workers: 4
log-level: debug
listen:
  - udp://127.0.0.1:5300
  - tcp://127.0.0.1:5300
  - tls://0.0.0.0:853
  - https://[::1]:8443/dns-query
  - http://127.0.0.1:8080/dns-query
  - quic://[::]:853
  - dns://[::1]:53
upstream:
  - udp://127.0.0.1:5335
  - tcp://[::1]:5335
  - tls://1.1.1.1:853#cloudflare-dns.com
  - https://9.9.9.9:443/dns-query#dns.quad9.net
  - quic://94.140.14.14:853#dns.adguard-dns.com
fallback: [tcp://1.1.1.1:53, "tcp://9.9.9.9:53"]
tls:
  cert: certs/dev-cert.pem
  key: certs/dev-key.pem
  ca: ""
  ticket-rotation-s: 60
limits:
  tcp-max-connections: 1000000
  tcp-max-inflight: 65535
  tcp-idle-timeout-ms: 100
  tcp-max-output-bytes: 4096
  max-inflight: 1
  tcp-read-timeout-ms: 600000
  tls-handshake-timeout-ms: 100
  tls-handshakes-per-ip: 0
  tls-handshake-burst: 1
  handshake-pressure: 0
  handshake-exempt: [192.0.2.0/24, "2001:db8::/48"]
pool:
  connections: 64
  max-inflight: 1
  timeout-ms: 10
  hedge-delay-ms: 0
  query-timeout-ms: 60000
  reconnect-min-ms: 1
  reconnect-max-ms: 600000
admin:
  listen: ["http://127.0.0.1:9153", "http://[::1]:9153/"]
  allow: [192.0.2.0/24, "::1"]
  max-connections: 1
  timeout-ms: 100
drain:
  delay-ms: 600000
  timeout-ms: 100
user: nobody
group: "65534"
cache:
  size: 64G
  shards: 4096
  min-ttl: 86400
  max-ttl: 604800
  negative-max-ttl: 0
"""
    s["admin_bad.yaml"] = ("admin:\n  listen: [\"https://127.0.0.1:9153\", "
                           "\"http://127.0.0.1:9153/metrics\", http://localhost:1]\n")
    s["drain_bad.yaml"] = ("drain: {delay-ms: -1, timeout-ms: 99}\nuser: \"-x\"\n"
                           "group: \"a b\"\n")
    s["sizes.yaml"] = "cache:\n  size: 0\n  shards: 1\n"
    s["size_k.yaml"] = "cache: {size: 512k, shards: 3}\n"
    s["size_overflow.yaml"] = "cache:\n  size: 99999999999999999999G\n"
    s["flow_style.yaml"] = ("{workers: 1, listen: [udp://127.0.0.1:53], "
                            "pool: {connections: 2}}\n")
    s["null_lists.yaml"] = "listen: ~\nupstream:\nfallback: null\ntls:\n"
    s["quoted.yaml"] = ("listen: 'tcp://127.0.0.1:53'\n"
                        "tls: {cert: \"a b\\tc\", key: '', ca: x}\n")
    s["dup_key.yaml"] = "workers: 1\nworkers: 2\n"
    s["dup_section.yaml"] = "pool: {connections: 1}\npool: {timeout-ms: 10}\n"
    s["unknown_key.yaml"] = "limits:\n  tcp-max-foo: 3\n"
    s["unknown_section.yaml"] = "bogus:\n  a: 1\n"
    s["wrong_type_list.yaml"] = "workers: [1, 2]\n"
    s["wrong_type_map.yaml"] = "listen: {a: b}\n"
    s["url_list_nested.yaml"] = "upstream: [[tcp://1.1.1.1:53]]\n"
    s["out_of_range.yaml"] = "pool:\n  connections: 65\n"
    s["negative.yaml"] = "workers: -1\n"
    s["hex.yaml"] = "workers: 0x10\n"
    s["bad_loglevel.yaml"] = "log-level: verbose\n"
    s["alias.yaml"] = "workers: &w 3\nlimits: {max-inflight: *w}\n"
    s["anchor_map.yaml"] = "pool: &p {connections: 2}\ncache: *p\n"
    s["tag.yaml"] = "workers: !!int 3\nlog-level: !custom info\n"
    s["two_docs.yaml"] = "workers: 1\n---\nworkers: 2\n"
    s["doc_markers.yaml"] = "%YAML 1.1\n---\nworkers: 1\n...\n"
    s["top_scalar.yaml"] = "hello\n"
    s["top_list.yaml"] = "- workers: 1\n"
    s["unclosed_bracket.yaml"] = "listen: [udp://127.0.0.1:53\nworkers: 1\n"
    s["unclosed_quote.yaml"] = "tls:\n  cert: \"abc\n  key: x\n"
    s["no_colon.yaml"] = "workers 1\nlog-level: info\n"
    s["tab_indent.yaml"] = "pool:\n\tconnections: 1\n"
    s["bad_indent.yaml"] = "pool:\n  connections: 1\n    timeout-ms: 10\n"
    s["nul_in_value.yaml"] = b"tls:\n  cert: \"a\\0b\"\n"
    s["nul_raw.yaml"] = b"workers: 1\0\n"
    s["invalid_utf8.yaml"] = b"tls:\n  cert: \xff\xfe\n"
    s["utf16_bom.yaml"] = "\ufeffworkers: 1\n".encode("utf-16-le")
    s["key_complex.yaml"] = "? [a, b]\n: c\n"
    s["long_string.yaml"] = "tls:\n  cert: " + "a" * 600 + "\n"
    s["too_many_urls.yaml"] = "listen:\n" + "".join(
        "  - udp://127.0.0.1:%d\n" % (1000 + i) for i in range(33))
    bad_urls = ["ftp://1.2.3.4:21", "udp://1.2.3:53", "udp://1.2.3.4",
                "udp://1.2.3.4:0", "udp://1.2.3.4:65536", "udp://::1:53",
                "udp://[::1:53", "udp://[::1]53", "tls://1.1.1.1:853",
                "tls://1.1.1.1:853#bad name", "https://1.1.1.1:443#x",
                "dns://1.1.1.1:53", "tcp://1.1.1.1:53/path",
                "udp://example.com:53", "http://1.2.3.4:80/a?b"]
    s["bad_upstreams.yaml"] = "upstream:\n" + "".join(
        "  - \"%s\"\n" % u for u in bad_urls)
    for i, u in enumerate(bad_urls):
        s["bad_url_%02d.txt" % i] = u
    good_urls = ["udp://127.0.0.1:53", "TCP://[::1]:5335",
                 "tls://1.1.1.1:853#cloudflare-dns.com",
                 "https://[2606:4700::1111]:443/dns-query#one.one.one.one",
                 "http://127.0.0.1:8080/dns-query",
                 "quic://[::ffff:1.2.3.4]:853#x_y-z.test",
                 "dns://0.0.0.0:53", "https://127.0.0.1:443/"]
    for i, u in enumerate(good_urls):
        s["url_%02d.txt" % i] = u
    s["comments_only.yaml"] = "# nothing\n\n   # here\n"
    s["crlf.yaml"] = "workers: 2\r\nlog-level: warn\r\n"
    return s


# ---------------------------------------------------------------- upstream

# ops (fuzz_upstream.c): op & 7 kind, op >> 3 argument
OP_QUERY, OP_ANSWER, OP_STREAM, OP_ATTEMPT, OP_HEDGE, OP_DEADLINE, \
    OP_CONN, OP_START = range(8)


def op(kind, arg=0):
    return bytes([kind | (arg << 3)])


def up_query(sel, idhi=0, pad=False, raw=None):
    if raw is not None:
        return op(OP_QUERY, 2) + bytes([sel, idhi, len(raw)]) + raw
    return op(OP_QUERY, 1 if pad else 0) + bytes([sel, idhi])


def up_answer(conn, mode, body, kind=OP_ANSWER):
    return op(kind) + bytes([conn, mode]) + u16(len(body)) + body


def up_conn(conn, action, failure=False, extra=b""):
    return op(OP_CONN, action | (4 if failure else 0)) + bytes([conn]) + extra


def upstream_seeds():
    s = {}
    # an answer body for splicing (mode 2): header + records after the
    # question the harness inserts
    def body(flags=QR | RD | RA, records=(), ar=0, ns=0):
        return header(0, flags, 1, len(records) - ns - ar, ns, ar) + \
            b"".join(records)

    good = body(records=[rr(PTR_Q, T_A, 300, a_rdata(1)),
                         rr(PTR_Q, T_A, 300, a_rdata(2))])
    good_opt = body(records=[rr(PTR_Q, T_A, 60, a_rdata(1)), opt()], ar=1)
    tc = body(flags=QR | RD | RA | TC)
    servfail_ede = body(flags=QR | RA | SERVFAIL,
                        records=[opt(options=u16(15) + u16(2) + u16(22))],
                        ar=1)
    nx = body(flags=QR | RA | NXDOMAIN,
              records=[rr(name("test"), T_SOA, 60, soa_rdata(30))], ns=1)
    # config byte 0: slots (0-1), 2 conns (2), hedge 0 (3), cache (4),
    # servers (5-6: udp / udp+tcp / tcp / tcp+udp), fallback (7)
    # sel: name 0-1, type 2-3, DO 16, CD 32, EDNS 64, UDP 128
    # conns: udp server -> [udp, tcp0 (, tcp1)], then the next server
    s["udp_answer.bin"] = bytes([0x01]) + up_query(0x40) + \
        up_answer(0, 3, good)
    s["udp_answer_opt_cache.bin"] = bytes([0x11]) + up_query(0x50) + \
        up_answer(0, 3, good_opt) + up_query(0x50)
    s["udp_two_queries_out_of_order.bin"] = bytes([0x01]) + \
        up_query(0x00) + up_query(0x05, 1) + up_answer(0, 3 | (1 << 2), nx) + \
        up_answer(0, 3, good)
    s["udp_coalesced.bin"] = bytes([0x01]) + up_query(0xc0) + \
        up_query(0x40, 7) + up_query(0x41, 9, pad=True) + up_answer(0, 3, good)
    s["udp_wrong_id.bin"] = bytes([0x01]) + up_query(0x40) + \
        up_answer(0, 2, good) + up_answer(0, 3, good)
    s["udp_question_mismatch.bin"] = bytes([0x01]) + up_query(0x40) + \
        up_answer(0, 1, header(0, QR | RA, 1, 0, 0, 0) + question("other.test"))
    s["udp_tc_retry_tcp.bin"] = bytes([0x01]) + up_query(0xc4) + \
        up_answer(0, 3, tc) + up_conn(1, 1)
    s["udp_servfail_ede.bin"] = bytes([0x81]) + up_query(0x48) + \
        up_answer(0, 3, servfail_ede)
    s["udp_malformed.bin"] = bytes([0x01]) + up_query(0x40) + \
        up_answer(0, 3, b"\x00" * 12 + b"\xc0\x0c\x00")
    s["udp_late_answer.bin"] = bytes([0x01]) + up_query(0x40) + \
        op(OP_DEADLINE) + b"\x00" + up_answer(0, 1, good)
    s["udp_recv_path.bin"] = bytes([0x01]) + up_query(0x40) + \
        up_conn(0, 2, extra=bytes([3, len(good)]) + good)
    # udp:// reads per query socket: a datagram with the wrong id (dropped,
    # the socket keeps waiting), then the answer, on the same socket
    s["udp_recv_wrong_then_right.bin"] = bytes([0x03]) + up_query(0x40) + \
        up_query(0x41, 1) + \
        up_conn(0, 2, extra=bytes([2, len(good)]) + good) + \
        up_conn(0, 2, extra=bytes([3, len(good)]) + good) + \
        up_conn(0, 2, extra=bytes([3 | (1 << 2), len(good)]) + good)
    # the end of a loop turn (op 7 arg 6) sends the queued queries in one
    # sendmmsg; the answers come back through recvmmsg, one on the socket
    # it went on, one after the socket was retired by a wrong id
    turn = op(OP_START, 6)
    s["udp_turn_flush.bin"] = bytes([0x03]) + up_query(0x40) + \
        up_query(0x41, 1) + up_query(0x42, 2) + turn + \
        up_conn(0, 2, extra=bytes([3, len(good)]) + good) + \
        up_conn(0, 2, extra=bytes([2, len(good)]) + good) + \
        up_conn(0, 2, extra=bytes([3 | (1 << 2), len(good)]) + good) + \
        up_query(0x43, 3) + turn + up_answer(0, 3, nx)
    s["hedge_to_fallback.bin"] = bytes([0x81]) + up_query(0x40) + \
        op(OP_HEDGE) + b"\x00" + up_answer(2, 3, good)
    s["hedge_zero.bin"] = bytes([0x89]) + up_query(0x41)
    s["attempt_timeout.bin"] = bytes([0xa1]) + up_query(0x40) + \
        op(OP_ATTEMPT) + b"\x00\x00" + op(OP_ATTEMPT) + b"\x00\x01"
    s["tcp_refused.bin"] = bytes([0x45]) + up_query(0x40) + \
        up_query(0x42) + up_conn(0, 1) + up_conn(1, 1)
    s["tcp_stream_framed.bin"] = bytes([0x45]) + up_query(0x40) + \
        up_query(0x44, 3) + up_answer(0, 3, good, OP_STREAM) + \
        up_answer(0, 3, nx, OP_STREAM)
    s["tcp_stream_raw.bin"] = bytes([0x44]) + up_query(0x40) + \
        up_answer(0, 0, b"\x00\x05hello\x00", OP_STREAM)
    s["tcp_stream_split.bin"] = bytes([0x44]) + up_query(0x40) + \
        up_answer(0, 0, b"\x00", OP_STREAM) + up_answer(0, 3, good, OP_STREAM)
    s["tcp_upstream_eof.bin"] = bytes([0x44]) + up_query(0x40) + \
        up_query(0x41) + up_answer(0, 3, good, OP_STREAM) + \
        up_conn(0, 3, failure=True)
    s["conn_close.bin"] = bytes([0x25]) + up_query(0x40) + up_query(0x43) + \
        up_conn(0, 0, True) + up_conn(1, 0)
    s["pool_start.bin"] = bytes([0x26]) + op(OP_START) + up_query(0x40) + \
        up_conn(1, 3)
    s["overload.bin"] = bytes([0x81]) + b"".join(
        up_query(0x40 | (i & 3) | ((i & 12) << 0), i) for i in range(20))
    s["slots_full.bin"] = bytes([0x00]) + up_query(0x40) + up_query(0x41) + \
        up_query(0x42)
    # serve-stale: op 7 arg 1 stores an expired answer for a query sel,
    # arg 2 fires a fetch's stale-answer timer
    def stale(sel):
        return op(OP_START, 1) + bytes([sel])

    def stale_timer(fetch=0):
        return op(OP_START, 2) + bytes([fetch])

    s["stale_timer.bin"] = bytes([0x11]) + stale(0x40) + up_query(0x40) + \
        stale_timer() + up_query(0x40, 1) + up_query(0x00, 2) + \
        up_answer(0, 3, good) + up_query(0x40, 3)
    s["stale_timer_no_edns.bin"] = bytes([0x11]) + stale(0x08) + \
        stale(0x19) + up_query(0x08) + up_query(0x19, 1, pad=True) + \
        stale_timer(0) + stale_timer(1) + up_query(0x88, 2)
    s["stale_on_failure.bin"] = bytes([0x11]) + stale(0x4c) + \
        up_query(0x4c) + up_query(0x4c, 1) + op(OP_DEADLINE) + b"\x00" + \
        up_query(0x4c, 2)
    s["raw_queries.bin"] = bytes([0x01]) + up_query(0, raw=b"\x00\x01") + \
        up_query(0, raw=header(7, 0x8000)) + \
        up_query(0, raw=header(8, 0, 2)) + \
        up_query(0, raw=header(9, 5 << 11) + question("x.test")) + \
        up_query(0, raw=query("x.test", edns=opt()[:5] + b"\x01" +
                              opt()[6:]))
    return s


# ---------------------------------------------------------------- stream

def stream_seeds():
    s = {}

    # byte 0: inflight (0-1: 1,2,4,128), 4 small output cap, 8 small
    # socket buffers, 16 cache, 32 upstream answers after every chunk,
    # 64 slow reader, 128 SERVFAIL upstream
    def inp(opt_byte, sizes, payload):
        return bytes([opt_byte, len(sizes)]) + bytes(sizes) + payload

    q1 = query("www.example.test", id_=1)
    q2 = query("cached.test", id_=2, edns=opt())
    q3 = query("big.test", T_TXT, id_=3, edns=opt(do=True))
    q4 = query("www.example.test", T_AAAA, id_=4, flags=RD | CD)
    ka = query("ka.test", id_=5, edns=opt(options=u16(11) + u16(0)))
    pad = query("pad.test", id_=6, edns=opt(options=u16(12) + u16(0)))
    formerr = header(7, 0, 2)
    notimp = header(8, 2 << 11) + question("x.test")
    badvers = header(9, RD, 1, 0, 0, 1) + question("v.test") + \
        b"\0" + u16(T_OPT) + u16(1232) + u32(0x00010000) + u16(0)
    resp = header(10, QR) + question("r.test")
    short = b"\x00\x0b" + b"\x01" * 11
    zero = b"\x00\x00"

    all_q = framed(q1, q2, q3, q4, ka, pad, formerr, notimp, badvers, resp)
    s["one_query.bin"] = inp(0x23, [], framed(q1))
    s["one_query_cached.bin"] = inp(0x13, [], framed(q2))
    s["all_kinds_whole.bin"] = inp(0x33, [], all_q + short + zero)
    s["all_kinds_bytewise.bin"] = inp(0x33, [1], all_q)
    s["split_in_length.bin"] = inp(0x23, [1, 2, 3, 0, 5], framed(q1, q4, ka))
    s["big_answers_slow_reader.bin"] = inp(
        0x5f, [200, 0], framed(*[query("big.test", T_TXT, id_=100 + i)
                                 for i in range(20)]))
    s["pipelined_no_answers.bin"] = inp(
        0x03, [7, 0], framed(*[query("q%d.test" % i, id_=200 + i)
                               for i in range(10)]))
    s["pipelined_answers.bin"] = inp(
        0x23, [50], framed(*[query("q%d.test" % i, id_=300 + i)
                             for i in range(30)]))
    s["servfail_upstream.bin"] = inp(0xa3, [0], framed(q1, q4))
    s["truncated_tail.bin"] = inp(0x23, [], framed(q1) + b"\x00\x40\x00\x01")
    s["odd_byte.bin"] = inp(0x23, [], framed(q2) + b"\x00")
    s["huge_query.bin"] = inp(0x33, [255, 255, 3], framed(
        header(11, RD, 1, 0, 0, 1) + question("h.test") +
        b"\0" + u16(T_OPT) + u16(1232) + u32(0) + u16(4000) +
        u16(12) + u16(3996) + b"\0" * 3996))
    s["coalesced.bin"] = inp(0x21, [0], framed(
        query("same.test", id_=20), query("SAME.test", id_=21),
        query("same.test", id_=22)))
    # regressions (fixed in 964940a): queries still buffered when the
    # client closes its side; a full input buffer read as EOF (needs more
    # than 128 KiB waiting behind tcp-max-inflight)
    s["regress_eof_buffered.bin"] = inp(0x00, [], framed(
        *[query("q%d.test" % i, id_=i + 1) for i in range(3)]))
    s["regress_full_buffer.bin"] = inp(0x00, [], framed(
        *[query("p%d.test" % i, id_=i + 1,
                edns=opt(options=u16(12) + u16(60) + b"\0" * 60))
          for i in range(1400)]))
    s["empty.bin"] = inp(0x00, [], b"")
    s["garbage.bin"] = inp(0x00, [3], b"\xff\xff" + b"\x00" * 40)
    return s


# ---------------------------------------------------------------- doh_client
#
# What a DoH server sends: SETTINGS, SETTINGS ACK, then per client stream
# (1, 3, 5, ...) a response.  HPACK by hand: indexed ":status" values from
# the static table, literal fields with an indexed name (content-type 31,
# content-length 28), never Huffman.

H2_DATA, H2_HEADERS, H2_RST, H2_SETTINGS, H2_PING, H2_GOAWAY, H2_WINDOW = (
    0, 1, 3, 4, 6, 7, 8)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def h2_frame(ftype, flags, stream, payload=b""):
    return (struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) +
            u32(stream) + payload)


def h2_settings(max_streams=None):
    p = b""
    if max_streams is not None:
        p += u16(3) + u32(max_streams)
    return h2_frame(H2_SETTINGS, 0, 0, p) + h2_frame(H2_SETTINGS, ACK, 0)


def hpack_literal(index, value):
    """Literal without indexing, name from the static table (4-bit
    prefix), value not Huffman-coded (7-bit prefix, short values)."""
    assert index >= 15 and len(value) < 127
    return bytes([0x0F, index - 15, len(value)]) + value


STATUS = {200: 0x88, 204: 0x89, 206: 0x8A, 304: 0x8B, 400: 0x8C, 404: 0x8D,
          500: 0x8E}


def h2_response(stream, body, status=200, ctype=b"application/dns-message",
                clen=True, split=1):
    block = bytes([STATUS[status]])
    if ctype is not None:
        block += hpack_literal(31, ctype)
    if clen:
        block += hpack_literal(28, str(len(body)).encode())
    out = h2_frame(H2_HEADERS, END_HEADERS | (0 if body else END_STREAM),
                   stream, block)
    step = max(1, (len(body) + split - 1) // split)
    for i in range(0, len(body), step):
        last = i + step >= len(body)
        out += h2_frame(H2_DATA, END_STREAM if last else 0, stream,
                        body[i:i + step])
    return out


def doh_client_seeds():
    ans = response("www.test.", id_=0)
    big = response("www.test.", id_=0) + b"\0" * 20000
    opts = lambda n, cmode=0, sub=False, out=False, rd=5, cap=3: bytes(
        [n | cmode << 4 | (0x40 if sub else 0) | (0x80 if out else 0),
         rd | cap << 3])
    s = {}
    s["one_answer"] = opts(1) + h2_settings(100) + h2_response(1, ans)
    s["three_out_of_order"] = (opts(3) + h2_settings() + h2_response(5, ans) +
                               h2_response(1, ans) + h2_response(3, ans))
    s["byte_by_byte"] = opts(2, rd=0, out=True) + h2_settings(1) + \
        h2_response(1, ans) + h2_response(3, ans)
    s["split_body"] = opts(1, rd=2, cap=0) + h2_settings() + \
        h2_response(1, ans, split=5)
    s["large_body"] = opts(1, cap=1) + h2_settings() + \
        h2_response(1, big, split=2)
    s["no_content_length"] = opts(1) + h2_settings() + \
        h2_response(1, ans, clen=False)
    s["status_404"] = opts(2) + h2_settings() + \
        h2_response(1, b"not found", status=404, ctype=b"text/plain") + \
        h2_response(3, ans)
    s["wrong_ctype"] = opts(1) + h2_settings() + \
        h2_response(1, ans, ctype=b"text/html")
    s["ctype_param"] = opts(1) + h2_settings() + \
        h2_response(1, ans, ctype=b"application/dns-message; x=y")
    s["short_body"] = opts(1) + h2_settings() + h2_response(1, b"\0" * 5)
    s["rst_stream"] = opts(2) + h2_settings() + \
        h2_frame(H2_RST, 0, 1, u32(2)) + h2_response(3, ans)
    s["refused"] = opts(1) + h2_settings() + h2_frame(H2_RST, 0, 1, u32(7))
    s["goaway"] = opts(4, sub=True) + h2_settings() + \
        h2_frame(H2_GOAWAY, 0, 0, u32(3) + u32(0)) + \
        h2_response(1, ans) + h2_response(3, ans)
    s["goaway_error"] = opts(2) + h2_settings() + \
        h2_frame(H2_GOAWAY, 0, 0, u32(0) + u32(1) + b"bye")
    s["ping_window"] = opts(1, out=True) + h2_settings() + \
        h2_frame(H2_PING, 0, 0, b"12345678") + \
        h2_frame(H2_WINDOW, 0, 0, u32(1000)) + h2_response(1, ans)
    s["cancel_and_submit"] = opts(6, cmode=3, sub=True, out=True) + \
        h2_settings(2) + b"".join(h2_response(i, ans) for i in range(1, 30, 2))
    s["bad_frame"] = opts(1) + h2_settings() + h2_frame(H2_DATA, 0, 0, b"x")
    s["http1_reply"] = opts(1) + b"HTTP/1.1 400 Bad Request\r\n\r\n"
    s["no_settings"] = opts(1) + h2_response(1, ans)
    return {k + ".bin": v for k, v in s.items()}


def main():
    write_dir("cache", cache_seeds())
    write_dir("config", config_seeds())
    write_dir("upstream", upstream_seeds())
    write_dir("stream", stream_seeds())
    write_dir("doh_client", doh_client_seeds())
    return 0


if __name__ == "__main__":
    sys.exit(main())
