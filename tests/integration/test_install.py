#!/usr/bin/python3
"""`cmake --install` of the build under test into a temporary DESTDIR, as a
package build does (prefix /usr), and what it installs:

  - the exact file list: dnsveil (sbin), dnsveil-doq (bin), dnsveil(8) and
    dnsveil-doq(1), the examples, /etc/dnsveil/dnsveil.yaml, the systemd
    unit and sysusers file;
  - the installed binary runs --version and --check-config on the installed
    configuration and on every installed example (the TLS ones with the test
    certificates put in); dnsveil-doq runs;
  - a second install keeps an edited /etc/dnsveil/dnsveil.yaml;
  - the man pages: `mandoc -T lint` clean, `man -l` renders them, `lexgrog`
    finds their NAME lines; dnsveil(8) names every option of --help and
    every key of --help-config, dnsveil-doq(1) has an entry for every
    option of its --help (they are generated from them at build time);
  - the unit: `systemd-analyze verify` with no complaint (its ExecStart and
    the man page it names resolved inside the DESTDIR) and `systemd-analyze
    security --offline=yes` at most 2.0 (measured: 1.5), with the
    directives the hardening rests on."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

SRC = os.environ.get("DV_SOURCE_DIR") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
PREFIX = "/usr"

EXPECTED = {
    "usr/sbin/dnsveil",
    "usr/bin/dnsveil-doq",
    "usr/share/man/man8/dnsveil.8",
    "usr/share/man/man1/dnsveil-doq.1",
    "usr/share/doc/dnsveil/examples/dnsveil.yaml",
    "usr/share/doc/dnsveil/examples/policy-example.yaml",
    "usr/share/doc/dnsveil/examples/container.yaml",
    "usr/share/doc/dnsveil/examples/Containerfile",
    "usr/share/doc/dnsveil/examples/Containerfile.kresd",
    "usr/share/doc/dnsveil/examples/dnsveil.service",
    "usr/lib/systemd/system/dnsveil.service",
    "usr/lib/sysusers.d/dnsveil.conf",
    # /etc for the /usr prefix (GNUInstallDirs); never overwritten
    "etc/dnsveil/dnsveil.yaml",
} | {"usr/share/doc/dnsveil/examples/kubernetes/" + f
     for f in (os.listdir(os.path.join(SRC, "conf", "kubernetes"))
               if os.path.isdir(os.path.join(SRC, "conf", "kubernetes")) else ())
     if f.endswith(".yaml")}

# what the unit's hardening rests on (README "Installing and running as a service")
UNIT_MUST = [
    "Type=notify", "User=dnsveil", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes",
    "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "SystemCallFilter=@system-service",
    "StateDirectory=dnsveil", "ExecReload=/bin/kill -HUP $MAINPID", "LimitNOFILE=1048576",
]


def run(args, **kw):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=h.scaled(120), **kw)
    log("$ %s -> %d" % (" ".join(args), r.returncode))
    return r


class Install(h.IntegrationTest):

    @classmethod
    def setUpClass(cls):
        cls.build = os.path.dirname(os.path.abspath(h.dnsveil_binary()))
        cls.dest = tempfile.mkdtemp(prefix="dv-install-")
        cls.etc_conf = "etc/dnsveil/dnsveil.yaml"
        cls.expected = EXPECTED
        # whatever prefix the build was configured with: --prefix /usr at
        # install time must give Debian's layout, paths inside files too
        cls.install_out = cls.install()

    @classmethod
    def install(cls):
        env = dict(os.environ, DESTDIR=cls.dest)
        r = subprocess.run(["cmake", "--install", cls.build, "--prefix", PREFIX], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=h.scaled(120))
        if r.returncode != 0:
            raise AssertionError("cmake --install failed:\n%s" % r.stdout)
        return r.stdout

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, True)

    def path(self, rel):
        return os.path.join(self.dest, rel)

    def files(self):
        out = set()
        for root, _, names in os.walk(self.dest):
            for n in names:
                out.add(os.path.relpath(os.path.join(root, n), self.dest))
        return out

    def test_file_list(self):
        got = self.files()
        self.assertEqual(got, self.expected, "installed files: missing %s, unexpected %s" % (
            sorted(self.expected - got), sorted(got - self.expected)))
        for exe in ("usr/sbin/dnsveil", "usr/bin/dnsveil-doq"):
            self.assertTrue(os.access(self.path(exe), os.X_OK), exe + " is not executable")
        log("ok: %d files installed, as expected" % len(got))

    def test_installed_binary_runs(self):
        dnsveil = self.path("usr/sbin/dnsveil")
        r = run([dnsveil, "--version"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^dnsveil \d+\.\d+\.\d+$")
        r = run([self.path("usr/bin/dnsveil-doq"), "--help"])
        self.assertIn("DNS-over-QUIC", r.stdout + r.stderr)
        # the installed configuration, as the unit's ExecStartPre checks it
        r = run([dnsveil, "--check-config", "-c", self.path(self.etc_conf)],
                cwd=os.path.dirname(self.path(self.etc_conf)))
        self.assertEqual(r.returncode, 0, "installed config: %s" % (r.stdout + r.stderr))
        self.assertIn("configuration OK", r.stdout)
        # every example, with the test certificates where a TLS listener
        # needs one, and listeners on loopback (a check binds nothing, but
        # keep the files the test writes on loopback anyway)
        ex = self.path("usr/share/doc/dnsveil/examples")
        tmp = tempfile.mkdtemp(prefix="dv-examples-")
        self.addCleanup(shutil.rmtree, tmp, True)
        for name in ("dnsveil.yaml", "container.yaml", "policy-example.yaml"):
            with open(os.path.join(ex, name)) as f:
                text = f.read()
            text = text.replace("0.0.0.0", "127.0.0.1")
            text = text.replace("certs/dev-cert.pem", h.CERT).replace("certs/dev-key.pem", h.KEY)
            # the policy example's lists (in the unit's StateDirectory): made
            # up here, in the test's own folder
            text = text.replace("/var/lib/dnsveil/", tmp + "/")
            for src in re.findall(r'source:\s*"?([^"\s,}]+)"?', text):
                if re.match(r"https?://", src):
                    continue  # a check fetches nothing (a copy on disk, if any)
                with open(src, "w") as f:
                    f.write("blocked.example.test\n")
            conf = os.path.join(tmp, name)
            with open(conf, "w") as f:
                f.write(text)
            r = run([dnsveil, "--check-config", "-c", conf], cwd=tmp)
            self.assertEqual(r.returncode, 0, "example %s: %s" % (name, r.stdout + r.stderr))
        log("ok: installed dnsveil --version, --check-config on the installed config "
            "and the examples; dnsveil-doq runs")

    def test_config_not_overwritten(self):
        conf = self.path(self.etc_conf)
        with open(conf, "a") as f:
            f.write("# edited by the operator\n")
        out = self.install()
        self.assertIn("Keeping", out, "second install output:\n%s" % out)
        with open(conf) as f:
            kept = f.read()
        self.assertTrue(kept.endswith("# edited by the operator\n"),
                        "cmake --install overwrote the operator's %s" % conf)
        log("ok: a second install keeps the edited %s" % self.etc_conf)

    def test_man_page(self):
        page = self.path("usr/share/man/man8/dnsveil.8")
        r = run(["mandoc", "-T", "lint", "-W", "warning", page])
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""), "mandoc -T lint")
        r = run(["lexgrog", page])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("dnsveil - encrypted DNS gateway", r.stdout)
        r = run(["man", "-l", page], env=dict(os.environ, MANWIDTH="200", MAN_KEEP_FORMATTING="",
                                            PAGER="cat"))
        self.assertEqual(r.returncode, 0, r.stderr)
        text = r.stdout
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "CONFIGURATION",
                        "SIGNALS", "SERVICE MANAGER", "FILES", "SEE ALSO"):
            self.assertRegex(text, r"(?m)^%s$" % section, "section %s missing" % section)
        # generated from the binary: every option and every key is there
        bin_ = self.path("usr/sbin/dnsveil")
        opts = re.findall(r"(?m)^  (-[^ ]+(?:, --[^ ]+)?(?: [A-Z]+)?)  ",
                          run([bin_, "--help"]).stdout)
        keys = [line.split()[0] for line in run([bin_, "--help-config"]).stdout.splitlines()
                if line.strip()]
        self.assertGreater(len(opts), 10)
        self.assertGreater(len(keys), 60)
        for o in opts + keys:
            self.assertIn(o, text, "%s is not in the man page" % o)
        log("ok: dnsveil(8): mandoc lint clean, lexgrog, man -l; %d options and %d config "
            "keys, all in it" % (len(opts), len(keys)))

    def test_man_page_doq(self):
        page = self.path("usr/share/man/man1/dnsveil-doq.1")
        r = run(["mandoc", "-T", "lint", "-W", "warning", page])
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""), "mandoc -T lint")
        r = run(["lexgrog", page])
        self.assertIn("dnsveil-doq - DNS-over-QUIC", r.stdout)
        r = run(["man", "-l", page], env=dict(os.environ, MANWIDTH="200", PAGER="cat"))
        self.assertEqual(r.returncode, 0, r.stderr)
        text = r.stdout
        for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS",
                        "EXAMPLES", "SEE ALSO"):
            self.assertRegex(text, r"(?m)^%s$" % section, "section %s missing" % section)
        # every option of --help is a list entry of its own
        r = run([self.path("usr/bin/dnsveil-doq"), "--help"])
        opts = re.findall(r"(?m)^  (?:    )?((?:-[A-Za-z], )?--?[A-Za-z0-9-]+)", r.stdout + r.stderr)
        self.assertGreater(len(opts), 25)
        for o in opts:
            self.assertRegex(text, r"(?m)^ {7}%s\b" % re.escape(o),
                             "%s is not an entry of dnsveil-doq(1)" % o)
        log("ok: dnsveil-doq(1): mandoc lint clean, lexgrog, man -l; %d options, each an "
            "entry" % len(opts))

    def unit_in_dest(self):
        """The installed unit with its paths inside the DESTDIR (what it
        names once installed at /), for systemd-analyze."""
        with open(self.path("usr/lib/systemd/system/dnsveil.service")) as f:
            text = f.read()
        d = tempfile.mkdtemp(prefix="dv-unit-")
        self.addCleanup(shutil.rmtree, d, True)
        unit = os.path.join(d, "dnsveil.service")
        for p in ("/usr/sbin/dnsveil", "/" + os.path.dirname(self.etc_conf)):
            text = text.replace(p, self.dest + p)
        with open(unit, "w") as f:
            f.write(text)
        return unit

    def test_systemd_unit(self):
        with open(self.path("usr/lib/systemd/system/dnsveil.service")) as f:
            installed = f.read()
        lines = [x.strip() for x in installed.splitlines()]
        for d in UNIT_MUST:
            self.assertIn(d, lines, "dnsveil.service lacks %s" % d)
        self.assertIn("ExecStart=/usr/sbin/dnsveil -c /%s" % self.etc_conf, lines)
        with open(self.path("usr/lib/sysusers.d/dnsveil.conf")) as f:
            self.assertIn("u dnsveil -", f.read())
        unit = self.unit_in_dest()
        env = dict(os.environ, MANPATH=self.path("usr/share/man"))
        r = run(["systemd-analyze", "verify", unit], env=env)
        self.assertEqual((r.returncode, (r.stdout + r.stderr).strip()), (0, ""),
                         "systemd-analyze verify")
        r = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit], env=env)
        m = re.search(r"Overall exposure level for dnsveil.service: ([0-9.]+)", r.stdout)
        self.assertIsNotNone(m, r.stdout + r.stderr)
        self.assertLessEqual(float(m.group(1)), 2.0, "exposure %s:\n%s" % (m.group(1), r.stdout))
        log("ok: systemd-analyze verify clean; security --offline exposure %s" % m.group(1))


if __name__ == "__main__":
    h.main()
