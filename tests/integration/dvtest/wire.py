"""DNS messages as tests build and read them (dnspython), and the plain
UDP and TCP exchanges."""

import os
import random
import socket
import struct

import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from .env import BIG_TXT_STRINGS, BIG_TXT_STRLEN, scaled


def make_query(name, rdtype="A", edns=0, payload=1232, rd=True, options=None, qid=None):
    """A dnspython query; edns=None for a query without OPT."""
    if edns is None:
        q = dns.message.make_query(name, rdtype, use_edns=False)
    else:
        q = dns.message.make_query(name, rdtype)
        # (make_query's use_edns=1 quietly means version 0: set it here)
        q.use_edns(edns, payload=payload, options=options or [])
    if not rd:
        q.flags &= ~dns.flags.RD
    if qid is not None:
        q.id = qid
    return q


def udp_query(port, name, rdtype="A", host="127.0.0.1", timeout=None, **kw):
    q = make_query(name, rdtype, **kw)
    return dns.query.udp(q, host, port=port, timeout=timeout or scaled(3.0),
                         ignore_trailing=True)


def tcp_query(port, name, rdtype="A", host="127.0.0.1", timeout=None, **kw):
    q = make_query(name, rdtype, **kw)
    return dns.query.tcp(q, host, port=port, timeout=timeout or scaled(3.0))


def udp_raw(port, payload, host="127.0.0.1", timeout=1.0):
    """Send raw bytes over UDP; return the raw answer or None on timeout."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(payload, (host, port))
        try:
            data, _ = s.recvfrom(65535)
            return data
        except socket.timeout:
            return None
    finally:
        s.close()


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def send_msg(sock, wire):
    """One message with its 2-byte length (RFC 7766 / RFC 7858 framing)
    on a TCP or TLS socket."""
    sock.sendall(struct.pack("!H", len(wire)) + wire)


def recv_msg(sock):
    """One length-prefixed message (raw bytes)."""
    (n,) = struct.unpack("!H", recv_exact(sock, 2))
    return recv_exact(sock, n)


def stream_query(sock, msg):
    """Send a dnspython message on a TCP or TLS socket; return (raw,
    parsed)."""
    send_msg(sock, msg.to_wire())
    raw = recv_msg(sock)
    return raw, dns.message.from_wire(raw)


def parse_header(wire):
    """(id, flags, qdcount, ancount, nscount, arcount) of raw bytes."""
    if wire is None or len(wire) < 12:
        raise AssertionError("not a DNS message: %r" % (wire,))
    return struct.unpack("!HHHHHH", wire[:12])


def header_rcode(wire):
    return parse_header(wire)[1] & 0xF


def header_opcode(wire):
    return (parse_header(wire)[1] >> 11) & 0xF


def ede_codes(msg):
    """Extended DNS Error info codes (RFC 8914, option 15) in a response."""
    codes = []
    for opt in (msg.options or []):
        if int(opt.otype) == 15:
            if hasattr(opt, "code"):
                codes.append(int(opt.code))
            else:  # GenericOption
                data = opt.data if hasattr(opt, "data") else opt.to_wire()
                codes.append(struct.unpack("!H", data[:2])[0] if len(data) >= 2 else -1)
    return codes


def rrset_texts(msg, section="answer"):
    out = []
    for rrset in getattr(msg, section):
        for rd in rrset:
            out.append((rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype),
                        rrset.ttl, rd.to_text()))
    return out


def a_records(msg):
    """The A rdata of the answer section, as text."""
    return [x[3] for x in rrset_texts(msg) if x[1] == "A"]


def txt_value(msg):
    """Concatenated strings of the first TXT record of the answer, or None."""
    for rrset in msg.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            for rd in rrset:
                return b"".join(rd.strings).decode()
    return None


def big_txt_strings():
    """The strings of big.example.test TXT (deterministic)."""
    return ["%02d" % i + chr(ord("a") + i) * (BIG_TXT_STRLEN - 2)
            for i in range(BIG_TXT_STRINGS)]


def host_addr(i):
    """Address of h<i>.example.test: 198.18.0.0/15 (benchmarking range)."""
    return "198.18.%d.%d" % (i // 256, i % 256)


def unique_label(prefix="u"):
    return "%s%d-%06x" % (prefix, os.getpid(), random.getrandbits(24))
