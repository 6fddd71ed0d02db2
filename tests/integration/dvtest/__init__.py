"""dvtest: the integration test harness of dnsveil (a package, so that
ctest's glob of tests/integration/test_*.py never takes it for a test).

A test file does `import dvtest as dv` (after putting its own folder on
sys.path) and ends with `dv.main()`.  Everything public of the modules is
here under one name:

  env       settings (DV_SANITIZE scaling, paths), free ports, processes,
            wait_for(), log()
  wire      DNS messages (dnspython), UDP and TCP exchanges, stream framing
  tls       the development certificates, TLS client contexts and
            connections, a throw-away PKI
  doh       DoH clients: raw HTTP/1.1, curl, HTTP/2 (python3-h2), h2load
  clients   kdig, dnsperf, openssl s_client, stubby
  upstream  Unbound, the slow authority, the delay line, who-answered checks
  daemon    dnsveil's configuration and the one Dnsveil class (it knows when
            each listener scheme serves), dnsveil-doq
  testcase  IntegrationTest and main(), the runner that reports skips
  reload    ReloadMixin: the config replaced, SIGHUP, POST /reload, metric(),
            a Secret volume's certificate rotation (publish)
  resolver  what Unbound and kresd share: start, wait, stop by PID

`/usr/bin/python3 -m dvtest selftest` (in tests/integration) checks the
Unbound, slow-authority, kdig and dnsperf parts without dnsveil.
"""

import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

from .env import *  # noqa: E402,F401,F403
from .wire import *  # noqa: E402,F401,F403
from .tls import *  # noqa: E402,F401,F403
from .doh import *  # noqa: E402,F401,F403
from .clients import *  # noqa: E402,F401,F403
from .daemon import *  # noqa: E402,F401,F403
from .upstream import *  # noqa: E402,F401,F403
from .kresd import *  # noqa: E402,F401,F403
from .reload import *  # noqa: E402,F401,F403
from .testcase import *  # noqa: E402,F401,F403
from .testcase import ALLOWED_SKIPS, main  # noqa: E402,F401
from .env import pid_alive, terminate  # noqa: E402,F401
