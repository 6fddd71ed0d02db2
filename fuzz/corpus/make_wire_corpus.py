#!/usr/bin/python3
"""Seed corpus for fuzz/fuzz_wire.c: writes fuzz/corpus/wire/*.bin.

Real queries and answers are built with dnspython (Debian: python3-dnspython),
the hostile ones byte by byte.  The output is deterministic (fixed ids, no
clock, no randomness), so re-running it changes nothing unless this script
changed.  fuzz_wire.c feeds every input both as a client query and as an
upstream answer to www.example.test/A, so answers use that question where
the point is to reach dv_wire_answer().

    /usr/bin/python3 fuzz/corpus/make_wire_corpus.py
"""
import os
import struct
import sys

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wire")

# The question fuzz_wire.c answers; answers to it reach dv_wire_answer().
QNAME = "www.example.test."

QR, AA, TC, RD, RA, AD, CD = (0x8000, 0x0400, 0x0200, 0x0100, 0x0080,
                              0x0020, 0x0010)
T_A, T_NS, T_CNAME, T_SOA, T_TXT, T_AAAA, T_OPT = 1, 2, 5, 6, 16, 28, 41

seeds = {}


def seed(name, data):
    assert name not in seeds, name
    assert len(data) <= 65535, name
    seeds[name] = bytes(data)


# ---------------------------------------------------------------- helpers


def wire(msg):
    return msg.to_wire()


def query(qname, rdtype, id_, edns=None, flags=dns.flags.RD, **kw):
    q = dns.message.make_query(qname, rdtype, id=id_, flags=flags,
                               use_edns=edns, **kw)
    return q


def response(q, rrs=(), authority=(), additional=(), rcode=0, flags=0,
             edns=None, options=None, pad=0):
    r = dns.message.make_response(q)
    r.flags |= dns.flags.RA | flags
    r.set_rcode(rcode)
    for text in rrs:
        r.answer.append(dns.rrset.from_text(*text))
    for text in authority:
        r.authority.append(dns.rrset.from_text(*text))
    for text in additional:
        r.additional.append(dns.rrset.from_text(*text))
    if edns is not None:
        r.use_edns(edns, ednsflags=r.ednsflags, payload=1232,
                   options=options or [], pad=pad)
    return r


def hdr(id_, flags, qd, an, ns, ar):
    return struct.pack(">HHHHHH", id_, flags, qd, an, ns, ar)


def name(dotted):
    out = b""
    for label in dotted.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def ptr(off):
    return struct.pack(">H", 0xC000 | off)


def question(dotted=QNAME, qtype=T_A):
    return name(dotted) + struct.pack(">HH", qtype, 1)


def rr_fixed(rtype, rclass, ttl, rdlen):
    return struct.pack(">HHIH", rtype, rclass, ttl, rdlen)


def opt(udp=1232, version=0, do=False, options=b"", rdlen=None):
    flags = 0x8000 if do else 0
    ttl = (version << 16) | flags
    if rdlen is None:
        rdlen = len(options)
    return b"\0" + rr_fixed(T_OPT, udp, ttl, rdlen) + options


def option(code, data):
    return struct.pack(">HH", code, len(data)) + data


def a_rr(owner, ttl, addr):
    return owner + rr_fixed(T_A, 1, ttl, 4) + bytes(addr)


# ---------------------------------------------------------------- queries

seed("q_a.bin", wire(query("www.example.com.", "A", 0x0001)))
seed("q_aaaa_mixedcase.bin", wire(query("WwW.ExAmPlE.CoM.", "AAAA", 0x0002)))
seed("q_a_norecurse.bin", wire(query("example.com.", "A", 0x0003, flags=0)))
seed("q_a_edns.bin", wire(query(QNAME, "A", 0x0004, edns=0, payload=1232)))
seed("q_a_edns_do_cd.bin",
     wire(query(QNAME, "A", 0x0005, edns=0, payload=4096, want_dnssec=True,
                flags=dns.flags.RD | dns.flags.CD)))
seed("q_a_edns_padding.bin",
     wire(query(QNAME, "A", 0x0006, edns=0, pad=128)))
seed("q_a_edns_cookie.bin",
     wire(query(QNAME, "A", 0x0007, edns=0,
                options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE,
                                                bytes(range(1, 9)))])))
seed("q_a_edns_ecs.bin",
     wire(query(QNAME, "A", 0x0008, edns=0,
                options=[dns.edns.ECSOption("192.0.2.0", 24)])))
seed("q_a_edns_keepalive.bin",
     wire(query(QNAME, "A", 0x0009, edns=0,
                options=[dns.edns.GenericOption(
                    dns.edns.OptionType.KEEPALIVE, b"")])))
seed("q_a_edns_all_options.bin",
     wire(query(QNAME, "A", 0x000A, edns=0, want_dnssec=True, pad=128,
                options=[
                    dns.edns.GenericOption(dns.edns.OptionType.COOKIE,
                                           bytes(range(8, 24))),
                    dns.edns.ECSOption("2001:db8::", 56),
                    dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE,
                                           b""),
                    dns.edns.GenericOption(dns.edns.OptionType.NSID, b""),
                ])))
seed("q_edns_version1.bin",
     wire(query(QNAME, "A", 0x000B, edns=1, payload=1232)))
seed("q_edns_udp_100.bin", wire(query(QNAME, "A", 0x000C, edns=0, payload=100)))
seed("q_edns_udp_65535.bin",
     wire(query(QNAME, "TXT", 0x000D, edns=0, payload=65535)))
seed("q_txt_any.bin", wire(query("example.com.", "ANY", 0x000E)))
seed("q_root_ns.bin", wire(query(".", "NS", 0x000F)))
_status = query("example.com.", "A", 0x0010, edns=0)
_status.set_opcode(dns.opcode.STATUS)
seed("q_opcode_status.bin", wire(_status))
_label63 = "a" * 63 + ".example."
seed("q_label_63.bin", wire(query(_label63, "A", 0x0011)))
# the longest name: 255 octets on the wire
_n255 = ".".join(["b" * 63, "c" * 63, "d" * 63, "e" * 61]) + "."
assert len(dns.name.from_text(_n255).to_wire()) == 255
seed("q_name_255.bin", wire(query(_n255, "AAAA", 0x0012, edns=0)))
# a query carrying a record (compressed owner) and a second additional
seed("q_with_records.bin",
     hdr(0x0013, RD, 1, 1, 0, 2) + question() + a_rr(ptr(12), 60, [192, 0, 2, 1])
     + a_rr(ptr(12), 60, [192, 0, 2, 2]) + opt(do=True))

# ---------------------------------------------------------------- answers

_q = query(QNAME, "A", 0x1001)
seed("r_a.bin", wire(response(_q, [(QNAME, 300, "IN", "A", "192.0.2.1")])))
_qe = query(QNAME, "A", 0x1002, edns=0, want_dnssec=True)
seed("r_a_edns_do.bin",
     wire(response(_qe, [(QNAME, 300, "IN", "A", "192.0.2.1"),
                         (QNAME, 300, "IN", "A", "192.0.2.2")],
                   flags=dns.flags.AD, edns=0)))
seed("r_cname_chain.bin",
     wire(response(_q, [
         (QNAME, 3600, "IN", "CNAME", "a.example.net."),
         ("a.example.net.", 600, "IN", "CNAME", "b.example.org."),
         ("b.example.org.", 60, "IN", "CNAME", "c.cdn.example."),
         ("c.cdn.example.", 20, "IN", "A", "198.51.100.7"),
     ])))
_soa = ("example.test.", 3600, "IN", "SOA",
        "ns1.example.test. hostmaster.example.test. 2024010101 7200 3600 "
        "1209600 300")
seed("r_nxdomain_soa.bin",
     wire(response(query("nope.example.test.", "A", 0x1003, edns=0),
                   authority=[_soa], rcode=dns.rcode.NXDOMAIN, edns=0)))
seed("r_nodata_soa.bin",
     wire(response(query(QNAME, "AAAA", 0x1004), authority=[_soa])))
seed("r_nxdomain_cname_soa.bin",
     wire(response(_q, [(QNAME, 300, "IN", "CNAME", "gone.example.test.")],
                   authority=[_soa], rcode=dns.rcode.NXDOMAIN)))
seed("r_servfail_ede.bin",
     wire(response(_qe, rcode=dns.rcode.SERVFAIL, edns=0,
                   options=[dns.edns.EDEOption(
                       dns.edns.EDECode.NO_REACHABLE_AUTHORITY,
                       "all servers timed out")])))
seed("r_refused_ede_notext.bin",
     wire(response(_qe, rcode=dns.rcode.REFUSED, edns=0,
                   options=[dns.edns.EDEOption(dns.edns.EDECode.PROHIBITED)])))
seed("r_big_txt.bin",
     wire(response(query(QNAME, "TXT", 0x1005, edns=0),
                   [(QNAME, 300, "IN", "TXT",
                     " ".join('"%s"' % (chr(ord("a") + i) * 255)
                              for i in range(4)))], edns=0)))
seed("r_many_a_300.bin",
     wire(response(_q, [(QNAME, 60 + i, "IN", "A",
                         "10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255))
                        for i in range(300)])))
seed("r_referral_glue.bin",
     wire(response(query("www.sub.example.test.", "A", 0x1006, edns=0),
                   authority=[("sub.example.test.", 86400, "IN", "NS",
                               "ns1.sub.example.test."),
                              ("sub.example.test.", 86400, "IN", "NS",
                               "ns2.sub.example.test.")],
                   additional=[("ns1.sub.example.test.", 86400, "IN", "A",
                                "192.0.2.53"),
                               ("ns2.sub.example.test.", 86400, "IN", "AAAA",
                                "2001:db8::53")],
                   edns=0)))
seed("r_tc.bin", wire(response(_q, flags=dns.flags.TC)))
seed("r_aaaa_padded_468.bin",
     wire(response(query(QNAME, "AAAA", 0x1007, edns=0), [
         (QNAME, 300, "IN", "AAAA", "2001:db8::1")], edns=0, pad=468)))
seed("r_mixedcase_question.bin",
     wire(response(query("WWW.Example.TEST.", "A", 0x1008),
                   [("WWW.Example.TEST.", 300, "IN", "A", "192.0.2.9")])))
# TTL with the top bit set (RFC 2181 8: treat as 0)
seed("r_ttl_msb.bin",
     hdr(0x1009, QR | RD | RA, 1, 2, 0, 0) + question()
     + a_rr(ptr(12), 0x80000E10, [192, 0, 2, 1])
     + a_rr(ptr(12), 30, [192, 0, 2, 2]))
# OPT that is not the last additional record
seed("r_opt_not_last.bin",
     hdr(0x100A, QR | RD | RA, 1, 1, 0, 2) + question()
     + a_rr(ptr(12), 300, [192, 0, 2, 1]) + opt()
     + a_rr(ptr(12), 300, [192, 0, 2, 2]))
# SOA whose RDATA is too short to hold the five numbers
seed("r_soa_short_rdata.bin",
     hdr(0x100B, QR | RA | 3, 1, 0, 1, 0) + question()
     + ptr(12) + rr_fixed(T_SOA, 1, 3600, 6) + b"\0\0" + b"\0\0\0\1")

# ---------------------------------------------------------------- hostile

seed("bad_empty.bin", b"")
seed("bad_11_bytes.bin", hdr(0x2001, RD, 1, 0, 0, 0)[:11])
seed("bad_header_only.bin", hdr(0x2002, RD, 1, 0, 0, 0))
seed("bad_qr_query.bin", hdr(0x2003, QR | RD, 1, 0, 0, 0) + question())
seed("bad_qdcount0.bin", hdr(0x2004, RD, 0, 0, 0, 0))
seed("bad_qdcount2.bin",
     hdr(0x2005, RD, 2, 0, 0, 0) + question() + question("b.example.test."))
seed("bad_truncated_question.bin",
     (hdr(0x2006, RD, 1, 0, 0, 0) + question())[:-3])
seed("bad_trailing_garbage.bin",
     hdr(0x2007, RD, 1, 0, 0, 1) + question() + opt() + b"\xde\xad\xbe\xef")
# a label, then a pointer back to it: every trip adds two octets
seed("bad_pointer_loop.bin",
     hdr(0x2008, QR, 1, 1, 0, 0) + question() + b"\x01x" + ptr(12 + 22)
     + rr_fixed(T_A, 1, 60, 4) + b"\0\0\0\0")
# two names pointing at each other (one of the pointers is forward)
seed("bad_pointer_loop_pair.bin",
     hdr(0x2009, QR, 1, 2, 0, 0) + question()
     + b"\x01a" + ptr(12 + 22 + 4 + 14) + rr_fixed(T_A, 1, 60, 4) + b"\0" * 4
     + b"\x01b" + ptr(12 + 22) + rr_fixed(T_A, 1, 60, 4) + b"\0" * 4)
seed("bad_pointer_self.bin",
     hdr(0x200A, QR, 1, 1, 0, 0) + question() + ptr(12 + 22)
     + rr_fixed(T_A, 1, 60, 4) + b"\0\0\0\0")
seed("bad_pointer_forward.bin",
     hdr(0x200B, QR, 1, 1, 0, 0) + question() + ptr(12 + 22 + 2)
     + rr_fixed(T_A, 1, 60, 4) + b"\0\0\0\0")
seed("bad_pointer_into_header.bin",
     hdr(0x200C, QR, 1, 1, 0, 0) + question() + ptr(2)
     + rr_fixed(T_A, 1, 60, 4) + b"\0\0\0\0")
seed("bad_pointer_cut.bin",
     hdr(0x200D, QR, 1, 1, 0, 0) + question() + b"\xc0")
# pointer in RDATA (a CNAME target) forming a loop
seed("bad_pointer_loop_rdata.bin",
     hdr(0x200E, QR, 1, 1, 0, 0) + question() + ptr(12)
     + rr_fixed(T_CNAME, 1, 60, 4) + b"\x01z" + ptr(12 + 22 + 12))
seed("bad_compressed_qname.bin",
     hdr(0x200F, RD, 1, 0, 0, 0) + b"\x03www" + ptr(12) + b"\0\1\0\1")
seed("bad_label_0x40.bin",
     hdr(0x2010, RD, 1, 0, 0, 0) + b"\x41a\0" + b"\0\1\0\1")
seed("bad_label_0x80.bin",
     hdr(0x2011, RD, 1, 0, 0, 0) + b"\x81a\0" + b"\0\1\0\1")
seed("bad_label_64.bin",
     hdr(0x2012, RD, 1, 0, 0, 0) + b"\x40" + b"a" * 64 + b"\0\0\1\0\1")
_n256 = b"".join(bytes([63]) + b"x" * 63 for _ in range(3)) + bytes([62]) \
    + b"y" * 62 + b"\0"
assert len(_n256) == 256
seed("bad_name_256.bin", hdr(0x2013, RD, 1, 0, 0, 0) + _n256 + b"\0\1\0\1")
# an owner that expands past 255 octets only through a pointer
_n250 = b"".join(bytes([63]) + b"x" * 63 for _ in range(3)) + bytes([56]) \
    + b"y" * 56 + b"\0"
assert len(_n250) == 250
seed("bad_name_256_via_pointer.bin",
     hdr(0x2014, QR, 1, 1, 0, 0) + _n250 + b"\0\1\0\1" + b"\x05abcde"
     + ptr(12) + rr_fixed(T_A, 1, 60, 4) + b"\0\0\0\0")
seed("bad_ancount_lies.bin",
     hdr(0x2015, QR | RD | RA, 1, 5, 0, 0) + question()
     + a_rr(ptr(12), 300, [192, 0, 2, 1]) + a_rr(ptr(12), 300, [192, 0, 2, 2]))
seed("bad_arcount_lies.bin",
     hdr(0x2016, RD, 1, 0, 0, 3) + question() + opt())
seed("bad_rdata_truncated.bin",
     hdr(0x2017, QR | RD | RA, 1, 1, 0, 0) + question() + ptr(12)
     + rr_fixed(T_A, 1, 300, 4) + b"\xc0\x00")
seed("bad_rdlen_huge.bin",
     hdr(0x2018, QR | RD | RA, 1, 1, 0, 0) + question() + ptr(12)
     + rr_fixed(T_TXT, 1, 300, 0xFFFF) + b"\x05hello")
seed("bad_two_opts.bin",
     hdr(0x2019, RD, 1, 0, 0, 2) + question() + opt(do=True) + opt())
seed("bad_two_opts_resp.bin",
     hdr(0x201A, QR | RD | RA, 1, 0, 0, 2) + question() + opt() + opt())
seed("bad_opt_nonroot.bin",
     hdr(0x201B, RD, 1, 0, 0, 1) + question() + ptr(12)
     + rr_fixed(T_OPT, 1232, 0, 0))
seed("bad_opt_option_len.bin",
     hdr(0x201C, RD, 1, 0, 0, 1) + question()
     + opt(options=struct.pack(">HH", 12, 9) + b"\0\0\0\0"))
seed("bad_opt_half_option.bin",
     hdr(0x201D, RD, 1, 0, 0, 1) + question()
     + opt(options=option(11, b"") + b"\x00\x0c\x00"))
seed("bad_opt_rdlen_past_end.bin",
     hdr(0x201E, RD, 1, 0, 0, 1) + question()
     + opt(options=option(12, b"\0\0"), rdlen=40))
seed("bad_opt_in_answer.bin",
     hdr(0x201F, QR | RD | RA, 1, 1, 0, 0) + question() + opt())
seed("r_servfail_ede_short_first.bin",
     hdr(0x2020, QR | RD | RA | 2, 1, 0, 0, 1) + question()
     + opt(options=option(15, b"\x07") + option(15, b"\x00\x16oops")))
seed("bad_rr_header_cut.bin",
     hdr(0x2021, QR | RD | RA, 1, 1, 0, 0) + question() + ptr(12)
     + b"\x00\x01\x00")


def main():
    os.makedirs(OUT, exist_ok=True)
    for fname, data in sorted(seeds.items()):
        with open(os.path.join(OUT, fname), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
