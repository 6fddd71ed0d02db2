"""Knot Resolver (kresd) as the resolver behind dnsveil: a process of our
own (never the system service) with its own Lua config, rundir and cache in
a temporary directory, with the same interface as `upstream.Unbound`
(addr, url(scheme), start/stop/kill/restart, alive, num_queries,
queries_for).

kresd does not serve zones itself: it stubs example.test to an Unbound of
ours that is the authority for the zone of `zone_text()` (with the same
`whoami`), and slow.example.test to the SlowAuthority, as the Unbound
resolver does.  Nothing leaves the machine: every other name is REFUSED by
policy, the modules that query the root on their own (priming, trust
anchor updates and signalling, time skew detection) are unloaded and there
is no trust anchor (no DNSSEC validation, no bootstrap).

Which queries kresd received from its clients is written by a policy rule
of ours to `queries.log` in its directory (name, type, transport, one line
per query): `num_queries()` and `queries_for()` read it, as Unbound's
query log is read."""

import os
import shutil
import tempfile

from .env import KEEP_TMP, SLOW_ZONE, ZONE, free_port
from .resolver import ResolverProcess
from .tls import CERT, KEY, ensure_dev_certs

KRESD = shutil.which("kresd", path="/usr/sbin:/usr/bin:/sbin:/bin") or "kresd"

CONFIG = """-- kresd of a dnsveil test: everything in {dir}
log_target('stderr')
log_level('{level}')
-- no packet off the machine: no root priming, no trust anchor work, no
-- time skew check against the root; no DNSSEC validation (no anchor)
for _, m in ipairs({{'priming', 'ta_update', 'ta_signal_query', 'ta_sentinel',
                    'detect_time_skew', 'detect_time_jump'}}) do
  modules.unload(m)
end
trust_anchors.remove('.')
net.ipv6 = false
{listen}
cache.open(10 * MB, 'lmdb://{dir}/cache')
-- the authority's TTLs as they are (kresd raises TTLs under 5 s by default)
cache.min_ttl(0)

-- the query log: one line per query of a client (not kresd's own)
local qlog = assert(io.open('{dir}/queries.log', 'a'))
qlog:setvbuf('line')
policy.add(function(req, _)
  if req.qsource.addr == nil then return nil end
  local qry = req:current()
  local f = req.qsource.flags
  local via = f.http and 'https' or (f.tls and 'tls' or (f.tcp and 'tcp' or 'udp'))
  qlog:write(kres.dname2str(qry.sname):lower(), ' ', kres.tostring.type[qry.stype] or
             tostring(qry.stype), ' ', via, '\\n')
  return nil
end)
{rules}
policy.add(policy.suffix(policy.STUB('127.0.0.1@{slow_port}'), {{todname('{slow}')}}))
policy.add(policy.suffix(policy.STUB('127.0.0.1@{auth_port}'), {{todname('{zone}')}}))
policy.add(policy.all(policy.REFUSE))
"""


class Kresd(ResolverProcess):
    """A kresd of ours: `kresd -n -c kresd.conf DIR` with DIR its rundir
    (control socket, cache) in a fresh temporary directory, listening on
    127.0.0.1:`port` (UDP and TCP), and with `tls=True` on `.tls_port` (DoT,
    certs/dev-cert.pem), with `https=True` on `.https_port` (DoH over
    HTTP/2, path /dns-query).  `authority` is the Unbound that serves the
    example.test zone behind it (the caller starts nothing: start() does).

    `local_data`: (name, ttl, type, rdata) records that kresd fetches anew
    every time (never from its cache), so each answer carries the full TTL,
    as Unbound's local-data does.  `netns`: run kresd and its authority in
    that network namespace; `listen_also`: more addresses (same ports)."""

    kind = "kresd"

    def __init__(self, whoami="local", slow=None, name=None, tls=False, https=False,
                 local_data=(), netns=None, listen_also=(), verbose=False):
        from .upstream import Unbound  # (upstream imports this module)
        self.whoami = whoami
        self.name = name or whoami
        self.slow = slow
        self.netns = netns
        self.dir = tempfile.mkdtemp(prefix="dv-kresd-%s-" % self.name)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "kresd.conf")
        self.log = os.path.join(self.dir, "kresd.stderr")
        self.qlog = os.path.join(self.dir, "queries.log")
        self.proc = None
        local = "".join('  local-data: "%s. %d IN %s %s"\n' % (n.rstrip("."), ttl, t, rd)
                        for n, ttl, t, rd in local_data)
        self.authority = Unbound(whoami=whoami, name="%s-auth" % self.name,
                                 for_downstream=True, log_queries=False,
                                 extra_server_conf=local, netns=netns)
        addrs = ["127.0.0.1"] + list(listen_also)
        listen = ["net.listen({'%s'}, %d, {kind = 'dns'})" % ("', '".join(addrs), self.port)]
        if tls or https:
            ensure_dev_certs()
            listen.append("net.tls('%s', '%s')" % (CERT, KEY))
        if tls:
            self.tls_port = free_port()
            listen.append("net.listen('127.0.0.1', %d, {kind = 'tls'})" % self.tls_port)
        if https:
            self.https_port = free_port()
            listen.append("net.listen('127.0.0.1', %d, {kind = 'doh2'})" % self.https_port)
        rules = []
        if local_data:
            names = sorted({n.rstrip(".") + "." for n, _, _, _ in local_data})
            rules.append("policy.add(policy.domains(policy.FLAGS({'NO_CACHE'}), {%s}))" % (
                ", ".join("todname('%s')" % n for n in names)))
        # with no slow authority its zone is stubbed to a dead port (port
        # 9, discard: nothing answers there)
        conf = CONFIG.format(dir=self.dir, level="debug" if verbose else "notice",
                             listen="\n".join(listen), rules="\n".join(rules),
                             slow=SLOW_ZONE, slow_port=slow.port if slow else 9,
                             zone=ZONE, auth_port=self.authority.port)
        with open(self.conf, "w") as f:
            f.write(conf)

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def url(self, scheme="tcp", name=None):
        if scheme == "tls":
            return "tls://127.0.0.1:%d%s" % (self.tls_port, "#" + name if name else "")
        if scheme == "https":
            return "https://127.0.0.1:%d/dns-query%s" % (self.https_port,
                                                         "#" + name if name else "")
        return "%s://127.0.0.1:%d" % (scheme, self.port)

    def start(self, timeout=15.0):
        if not self.authority.alive():
            self.authority.start(timeout)
        return self._launch([KRESD, "-n", "-c", self.conf, self.dir], timeout)

    def _queries(self):
        try:
            with open(self.qlog) as f:
                return [line.split() for line in f]
        except FileNotFoundError:
            return []

    def num_queries(self, via=None):
        """Queries kresd received from clients (over transport `via`:
        "udp", "tcp", "tls" or "https", or any)."""
        return sum(1 for q in self._queries() if via is None or q[2] == via)

    def queries_for(self, name, rdtype=None):
        """How many queries for `name` (case-insensitive; and `rdtype`)
        kresd received from clients."""
        name = name.lower().rstrip(".") + "."
        return sum(1 for q in self._queries()
                   if q[0] == name and (rdtype is None or q[1] == rdtype))

    def https_queries(self):
        return self.num_queries("https")

    def stats(self):
        """The client queries kresd received, in all and by transport."""
        out = {"queries": 0, "udp": 0, "tcp": 0, "tls": 0, "https": 0}
        for q in self._queries():
            out["queries"] += 1
            out[q[2]] = out.get(q[2], 0) + 1
        return out

    def cleanup(self, keep=False):
        self.kill()
        self.authority.cleanup(keep=keep)
        if not keep and not KEEP_TMP:
            shutil.rmtree(self.dir, ignore_errors=True)
