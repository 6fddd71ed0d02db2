#!/usr/bin/python3
"""The container recipe and the Kubernetes manifests, checked against the
binary and the configuration they carry.  No image is built here (that
needs the debian:12 base image, a download); what is checked instead:

Containerfile (conf/Containerfile, conf/Containerfile.kresd):
  - two stages from debian:12; the build stage installs exactly the -dev
    packages of .ci/setup's BUILD_DEPS (less the test-only ones); the
    runtime stage installs exactly the Debian packages that hold the shared
    libraries dnsveil and dnsveil-doq link (readelf NEEDED, then dpkg -S),
    plus ca-certificates, and each package exists in the apt lists;
  - the files copied from the build stage are where `cmake --install
    --prefix /usr` puts them; a numeric non-root USER; EXPOSE is exactly
    what the image's config (conf/container.yaml) listens on, which passes
    --check-config; .dockerignore keeps builds and keys out of the context.

Kubernetes (conf/kubernetes/*.yaml, python3-yaml):
  - every document parses and has the apiVersion its kind needs; the
    kustomization names files that exist;
  - the ConfigMap's dnsveil.yaml passes --check-config (certificate paths
    rewritten to the test certificates) and its upstream is the port the
    kresd.conf beside it listens on, on 127.0.0.1;
  - in the Deployment and the sidecar Pod: the container ports are exactly
    the config's listeners (dns: UDP and TCP, tls: TCP, quic: UDP, https:
    TCP) plus the admin port, all unprivileged; the probes are /healthz and
    /readyz on the admin listener's port; the config and TLS mounts are
    where the args and the config's tls.cert/tls.key point, and the
    ticket-key Secret's where tls.ticket-key-file points; non-root with
    every capability dropped, matching the Containerfile's USER;
  - the Service maps 53/UDP, 53/TCP, 853/TCP, 853/UDP and 443/TCP to named
    container ports of the same protocol, its selector picks the pod; the
    HPA scales the Deployment, which has CPU requests;
  - and the ConfigMap's configuration run for real (addresses on loopback,
    ports and upstream swapped for the test's): every listener answers and
    the probes' paths on its admin port answer 200."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dvtest as h  # noqa: E402
from dvtest import log  # noqa: E402

SRC = os.environ.get("DV_SOURCE_DIR") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
CONF = os.path.join(SRC, "conf")
K8S = os.path.join(CONF, "kubernetes")

API = {"ConfigMap": "v1", "Secret": "v1", "Service": "v1", "Pod": "v1",
       "Deployment": "apps/v1", "HorizontalPodAutoscaler": "autoscaling/v2",
       "PodDisruptionBudget": "policy/v1",
       "Kustomization": "kustomize.config.k8s.io/v1beta1"}
# what each listener scheme needs open, as (port, protocol)
PROTOS = {"dns": ("UDP", "TCP"), "udp": ("UDP",), "tcp": ("TCP",), "tls": ("TCP",),
          "quic": ("UDP",), "https": ("TCP",), "http": ("TCP",)}
SERVICE_PORTS = {(53, "UDP"), (53, "TCP"), (853, "TCP"), (853, "UDP"), (443, "TCP")}
# test-only packages of .ci/setup's BUILD_DEPS: the image builds with
# DV_TESTS=OFF and needs no certificate tooling
NOT_IN_IMAGE_BUILD = {"libcmocka-dev", "openssl", "ca-certificates"}
# the ASan build's own runtimes (the image is a release build)
SANITIZER_LIBS = re.compile(r"^lib(asan|ubsan|lsan|tsan)\.so")


def instructions(path):
    """[(INSTRUCTION, argument text)] of a Containerfile, continuation
    lines joined, comments dropped."""
    out, cur = [], ""
    with open(path) as f:
        for line in f:
            s = line.rstrip("\n")
            if not cur and (not s.strip() or s.lstrip().startswith("#")):
                continue
            if s.rstrip().endswith("\\"):
                cur += s.rstrip()[:-1] + " "
                continue
            cur += s
            word, _, rest = cur.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            cur = ""
    return out


def stages(path):
    """[[(INSTRUCTION, arg)...] per FROM]."""
    st = []
    for ins, arg in instructions(path):
        if ins == "FROM":
            st.append([])
        st[-1].append((ins, arg))
    return st


def apt_installs(stage):
    """The packages every `apt-get install` of a stage installs."""
    pkgs = set()
    for ins, arg in stage:
        if ins != "RUN":
            continue
        for cmd in re.split(r"&&|;", arg):
            words = shlex.split(cmd)
            if "apt-get" in words and "install" in words:
                pkgs |= {w for w in words[words.index("install") + 1:] if not w.startswith("-")}
    return pkgs


def args_of(stage, ins):
    return [a for i, a in stage if i == ins]


def ci_build_deps():
    with open(os.path.join(SRC, ".ci", "setup")) as f:
        text = f.read()
    m = re.search(r'BUILD_DEPS="([^"]*)"', text)
    return set(m.group(1).replace("\\\n", " ").split())


def needed_packages(binaries):
    """Debian packages holding the shared libraries the binaries link
    directly (DT_NEEDED), without libc6 (in every base image)."""
    sonames = set()
    for b in binaries:
        out = subprocess.run(["readelf", "-d", b], capture_output=True, text=True,
                             check=True).stdout
        sonames |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True,
                           check=True).stdout
    pkgs = {}
    for so in sorted(sonames):
        if SANITIZER_LIBS.match(so):
            continue
        m = re.search(r"^\s*%s \(libc6,x86-64[^)]*\) => (\S+)$" % re.escape(so), cache, re.M) \
            or re.search(r"^\s*%s \([^)]*\) => (\S+)$" % re.escape(so), cache, re.M)
        assert m, "%s not in ldconfig's cache" % so
        path = m.group(1)
        owner = None
        for p in (path, os.path.realpath(path), "/usr" + path, "/usr" + os.path.realpath(path),
                  re.sub(r"^/usr", "", os.path.realpath(path))):
            r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
            if r.returncode == 0:
                owner = r.stdout.split(":")[0]
                break
        assert owner, "no Debian package holds %s (%s)" % (so, path)
        pkgs[so] = owner
    return {p for p in pkgs.values() if p != "libc6"}, pkgs


def listener_ports(cfg):
    """{(port, PROTO)} of the listeners of a dnsveil config dict."""
    out = set()
    for url in cfg.get("listen", []):
        m = re.match(r"([a-z]+)://(?:\[[^\]]+\]|[^:/]+):(\d+)", url)
        assert m, url
        for proto in PROTOS[m.group(1)]:
            out.add((int(m.group(2)), proto))
    return out


def admin_port(cfg):
    urls = (cfg.get("admin") or {}).get("listen") or []
    assert urls, "no admin listener: the probes need one"
    return int(re.match(r"http://(?:\[[^\]]+\]|[^:/]+):(\d+)", urls[0]).group(1))


def check_config(cfg_text, cwd):
    path = os.path.join(cwd, "check.yaml")
    with open(path, "w") as f:
        f.write(cfg_text)
    return h.run_dnsveil(["--check-config", "-c", path])


class Containerfile(h.IntegrationTest):

    def test_stages_and_packages(self):
        st = stages(os.path.join(CONF, "Containerfile"))
        self.assertEqual(len(st), 2, "two stages: build and runtime")
        self.assertEqual(st[0][0][1], "debian:12 AS build")
        self.assertEqual(st[1][0][1], "debian:12")
        build_pkgs = apt_installs(st[0])
        want_build = ci_build_deps() - NOT_IN_IMAGE_BUILD
        self.assertEqual(build_pkgs, want_build, "build stage packages vs .ci/setup BUILD_DEPS")
        build = os.path.dirname(os.path.abspath(h.dnsveil_binary()))
        want, by_so = needed_packages([h.dnsveil_binary(), os.path.join(build, "dnsveil-doq")])
        runtime = apt_installs(st[1])
        self.assertEqual(runtime, want | {"ca-certificates"},
                         "runtime packages vs the libraries linked (%s)" % by_so)
        # every one a package of Debian 12's archive (the apt lists)
        pkgs = sorted(build_pkgs | runtime)
        r = subprocess.run(["apt-cache", "show", "--no-all-versions"] + pkgs,
                           capture_output=True, text=True)
        known = set(re.findall(r"(?m)^Package: (\S+)$", r.stdout))
        self.assertEqual(set(pkgs) - known, set(), "not in the apt lists: %s" % r.stderr)
        log("ok: build stage %d packages = .ci/setup's; runtime %s = readelf NEEDED -> dpkg -S "
            "(+ ca-certificates)" % (len(build_pkgs), " ".join(sorted(runtime))))

    def test_runtime_stage(self):
        st = stages(os.path.join(CONF, "Containerfile"))[1]
        user = args_of(st, "USER")
        self.assertEqual(len(user), 1)
        self.assertRegex(user[0], r"^[1-9]\d*:[1-9]\d*$", "numeric non-root USER uid:gid")
        # what the build stage copies out is where the install puts it
        dest = tempfile.mkdtemp(prefix="dv-out-")
        self.addCleanup(shutil.rmtree, dest, True)
        build = os.path.dirname(os.path.abspath(h.dnsveil_binary()))
        subprocess.run(["cmake", "--install", build, "--prefix", "/usr"], check=True,
                       env=dict(os.environ, DESTDIR=dest), capture_output=True)
        config_dest = None
        for arg in args_of(st, "COPY"):
            words = arg.split()
            if words[0] == "--from=build":
                src = words[1]
                self.assertTrue(src.startswith("/out/"), arg)
                self.assertTrue(os.path.isfile(os.path.join(dest, src[len("/out/"):])),
                                "%s is not installed by cmake --install --prefix /usr" % src)
            else:
                self.assertTrue(os.path.exists(os.path.join(SRC, words[0])), arg)
                if words[0] == "conf/container.yaml":
                    config_dest = words[1]
        entry = args_of(st, "ENTRYPOINT")
        cmd = args_of(st, "CMD")
        self.assertEqual(yaml.safe_load(entry[0]), ["/usr/sbin/dnsveil"])
        self.assertEqual(yaml.safe_load(cmd[0]), ["-c", config_dest])
        # EXPOSE = what the image's config serves, admin included
        with open(os.path.join(CONF, "container.yaml")) as f:
            text = f.read()
        cfg = yaml.safe_load(text)
        exposed = set()
        for a in args_of(st, "EXPOSE"):
            for x in a.split():
                port, proto = x.split("/")
                exposed.add((int(port), proto.upper()))
        self.assertTrue(SERVICE_PORTS <= exposed, "EXPOSE %s lacks %s" % (
            sorted(exposed), sorted(SERVICE_PORTS - exposed)))
        served = listener_ports(cfg) | {(admin_port(cfg), "TCP")}
        self.assertTrue(served <= exposed, "listeners not exposed: %s" % (served - exposed))
        tmp = tempfile.mkdtemp(prefix="dv-container-")
        self.addCleanup(shutil.rmtree, tmp, True)
        r = check_config(text, tmp)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(SRC, ".dockerignore")) as f:
            ignored = f.read().split()
        for x in (".git", "build*", "certs/*.pem"):
            self.assertIn(x, ignored)
        log("ok: runtime stage: USER %s, %d files from the build stage where the install "
            "puts them, EXPOSE %s, container.yaml OK" % (
                user[0], len([a for a in args_of(st, "COPY") if "--from" in a]),
                " ".join("%d/%s" % x for x in sorted(exposed))))

    def test_kresd_image(self):
        st = stages(os.path.join(CONF, "Containerfile.kresd"))
        self.assertEqual(len(st), 1)
        self.assertEqual(st[0][0][1], "debian:12")
        self.assertIn("knot-resolver", apt_installs(st[0]))
        entry = yaml.safe_load(args_of(st[0], "ENTRYPOINT")[0])
        files = subprocess.run(["dpkg", "-L", "knot-resolver"], capture_output=True,
                               text=True, check=True).stdout.split()
        self.assertIn(entry[0], files, "ENTRYPOINT is not a file of Debian's knot-resolver")
        self.assertRegex(args_of(st[0], "USER")[0], r"^[1-9]\d*:[1-9]\d*$")
        log("ok: Containerfile.kresd: debian:12, knot-resolver, %s, USER %s" % (
            entry[0], args_of(st[0], "USER")[0]))


class Kubernetes(h.IntegrationTest):

    @classmethod
    def setUpClass(cls):
        cls.docs = {}
        for name in sorted(os.listdir(K8S)):
            if name.endswith(".yaml"):
                with open(os.path.join(K8S, name)) as f:
                    cls.docs[name] = [d for d in yaml.safe_load_all(f) if d is not None]
        cls.by_kind = {}
        for name, docs in cls.docs.items():
            for d in docs:
                cls.by_kind.setdefault(d["kind"], []).append(d)
        cm = cls.one("ConfigMap")
        cls.cfg_text = cm["data"]["dnsveil.yaml"]
        cls.cfg = yaml.safe_load(cls.cfg_text)
        cls.kresd_conf = cm["data"]["kresd.conf"]

    @classmethod
    def one(cls, kind):
        docs = cls.by_kind.get(kind, [])
        assert len(docs) == 1, "%d %s documents" % (len(docs), kind)
        return docs[0]

    @classmethod
    def secret(cls, type_):
        docs = [d for d in cls.by_kind.get("Secret", []) if d.get("type") == type_]
        assert len(docs) == 1, "%d Secrets of type %s" % (len(docs), type_)
        return docs[0]

    def ticket_key_file(self, tmp):
        """A key file like the one the ticket-key Secret must hold."""
        path = os.path.join(tmp, "ticket.key")
        with open(path, "wb") as f:
            f.write(os.urandom(80))
        return path

    def pod_specs(self):
        return [("Deployment", self.one("Deployment")["spec"]["template"]["spec"]),
                ("Pod", self.one("Pod")["spec"])]

    def test_parse_and_api_versions(self):
        n = 0
        for name, docs in self.docs.items():
            for d in docs:
                n += 1
                self.assertIn(d.get("kind"), API, "%s: kind %r" % (name, d.get("kind")))
                self.assertEqual(d.get("apiVersion"), API[d["kind"]], name)
                if d["kind"] != "Kustomization":
                    self.assertTrue(d.get("metadata", {}).get("name"), name)
        kz = self.one("Kustomization")
        for r in kz["resources"]:
            self.assertTrue(os.path.isfile(os.path.join(K8S, r)), "kustomization: %s" % r)
        kinds = {d["kind"] for r in kz["resources"] for d in self.docs[r]}
        self.assertEqual(kinds, {"ConfigMap", "Secret", "Deployment", "Service",
                                 "HorizontalPodAutoscaler", "PodDisruptionBudget"})
        self.assertEqual(len(self.by_kind["Secret"]), 2)
        sec = self.secret("kubernetes.io/tls")
        self.assertEqual(set(sec["stringData"]), {"tls.crt", "tls.key"})
        tk = self.secret("Opaque")
        self.assertEqual(set(tk["stringData"]), {"ticket.key"})
        log("ok: %d documents in %d files parse, apiVersions right, kustomization complete" % (
            n, len(self.docs)))

    def test_config_checks_and_upstream_is_kresd(self):
        tmp = tempfile.mkdtemp(prefix="dv-k8s-")
        self.addCleanup(shutil.rmtree, tmp, True)
        tls = self.cfg["tls"]
        text = self.cfg_text.replace(tls["cert"], h.CERT).replace(tls["key"], h.KEY)
        text = text.replace(tls["ticket-key-file"], self.ticket_key_file(tmp))
        r = check_config(text, tmp)
        self.assertEqual(r.returncode, 0, "ConfigMap dnsveil.yaml: %s" % (r.stdout + r.stderr))
        m = re.search(r"net\.listen\('127\.0\.0\.1',\s*(\d+),\s*\{\s*kind\s*=\s*'dns'",
                      self.kresd_conf)
        self.assertIsNotNone(m, "kresd.conf: no plain DNS listener on 127.0.0.1")
        self.assertEqual(self.cfg["upstream"], ["tcp://127.0.0.1:%s" % m.group(1)],
                         "dnsveil's upstream is not the kresd beside it")
        log("ok: ConfigMap config passes --check-config; upstream = kresd on 127.0.0.1:%s"
            % m.group(1))

    def test_pod_ports_probes_mounts(self):
        want = listener_ports(self.cfg)
        admin = admin_port(self.cfg)
        sec = self.secret("kubernetes.io/tls")["metadata"]["name"]
        tk_sec = self.secret("Opaque")["metadata"]["name"]
        cm = self.one("ConfigMap")["metadata"]["name"]
        for kind, spec in self.pod_specs():
            c = {x["name"]: x for x in spec["containers"]}
            self.assertEqual(set(c), {"dnsveil", "kresd"}, kind)
            d = c["dnsveil"]
            ports = {(p["containerPort"], p.get("protocol", "TCP")) for p in d["ports"]}
            self.assertEqual(ports, want | {(admin, "TCP")}, "%s container ports" % kind)
            self.assertTrue(all(p >= 1024 for p, _ in ports),
                            "%s: a privileged port without capabilities" % kind)
            named = {p["name"]: p["containerPort"] for p in d["ports"]}
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                g = d[probe]["httpGet"]
                self.assertEqual(g["path"], path, "%s %s" % (kind, probe))
                self.assertEqual(named.get(g["port"], g["port"]), admin,
                                 "%s %s port is not the admin listener's" % (kind, probe))
            # the config file the args name comes from the ConfigMap
            vols = {v["name"]: v for v in spec["volumes"]}
            mounts = {m["mountPath"]: m for m in d["volumeMounts"]}
            conf_path = d["args"][d["args"].index("-c") + 1]
            mdir, fname = os.path.split(conf_path)
            self.assertIn(mdir, mounts, "%s: nothing mounted at %s" % (kind, mdir))
            v = vols[mounts[mdir]["name"]]
            self.assertEqual(v["configMap"]["name"], cm)
            self.assertIn({"key": "dnsveil.yaml", "path": fname}, v["configMap"]["items"])
            # tls.cert and tls.key are files of the TLS Secret's mount
            for key in ("cert", "key"):
                tdir, tname = os.path.split(self.cfg["tls"][key])
                self.assertIn(tdir, mounts, "%s: tls.%s dir not mounted" % (kind, key))
                v = vols[mounts[tdir]["name"]]
                self.assertEqual(v["secret"]["secretName"], sec)
                self.assertIn(tname, [i["path"] for i in v["secret"]["items"]])
                self.assertTrue(mounts[tdir].get("readOnly"))
            # tls.ticket-key-file: a file of the ticket-key Secret's mount,
            # a whole directory (a subPath mount never sees a new key)
            tdir, tname = os.path.split(self.cfg["tls"]["ticket-key-file"])
            self.assertIn(tdir, mounts, "%s: tls.ticket-key-file dir not mounted" % kind)
            self.assertNotIn("subPath", mounts[tdir], kind)
            self.assertTrue(mounts[tdir].get("readOnly"))
            v = vols[mounts[tdir]["name"]]
            self.assertEqual(v["secret"]["secretName"], tk_sec)
            self.assertIn(tname, [i["path"] for i in v["secret"]["items"]])
            # kresd's config from the same ConfigMap
            k = c["kresd"]
            kconf = k["args"][k["args"].index("-c") + 1]
            kdir, kname = os.path.split(kconf)
            kv = vols[{m["mountPath"]: m for m in k["volumeMounts"]}[kdir]["name"]]
            self.assertIn({"key": "kresd.conf", "path": kname}, kv["configMap"]["items"])
            # unprivileged
            self.assertTrue(spec["securityContext"]["runAsNonRoot"])
            for name, x in c.items():
                sc = x["securityContext"]
                self.assertEqual(sc["capabilities"]["drop"], ["ALL"], name)
                self.assertNotIn("add", sc["capabilities"], name)
                self.assertFalse(sc["allowPrivilegeEscalation"], name)
                self.assertTrue(sc["readOnlyRootFilesystem"], name)
            for cname, cf in (("dnsveil", "Containerfile"), ("kresd", "Containerfile.kresd")):
                user = args_of(stages(os.path.join(CONF, cf))[-1], "USER")[0]
                self.assertEqual("%d:%d" % (c[cname]["securityContext"]["runAsUser"],
                                            c[cname]["securityContext"]["runAsGroup"]), user,
                                 "%s %s: runAsUser vs %s USER" % (kind, cname, cf))
        self.assertEqual(self.pod_specs()[0][1], self.pod_specs()[1][1],
                         "the sidecar Pod and the Deployment's template differ")
        log("ok: Deployment and Pod: ports %s + admin %d, probes /healthz and /readyz on it, "
            "config and TLS mounts match, non-root, no capabilities" % (
                " ".join("%d/%s" % x for x in sorted(want)), admin))

    def test_service_and_hpa(self):
        svc = self.one("Service")
        dep = self.one("Deployment")
        labels = dep["spec"]["template"]["metadata"]["labels"]
        for k, v in svc["spec"]["selector"].items():
            self.assertEqual(labels.get(k), v, "Service selector does not pick the pods")
        self.assertEqual(dep["spec"]["selector"]["matchLabels"], svc["spec"]["selector"])
        cports = {p["name"]: (p["containerPort"], p["protocol"])
                  for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
        got = set()
        for p in svc["spec"]["ports"]:
            proto = p.get("protocol", "TCP")
            got.add((p["port"], proto))
            self.assertIn(p["targetPort"], cports, "Service port %s: targetPort" % p["name"])
            self.assertEqual(cports[p["targetPort"]][1], proto,
                             "Service port %s: protocol differs from the container's" % p["name"])
        self.assertEqual(got, SERVICE_PORTS)
        self.assertNotIn("admin", [p["targetPort"] for p in svc["spec"]["ports"]])
        hpa = self.one("HorizontalPodAutoscaler")
        ref = hpa["spec"]["scaleTargetRef"]
        self.assertEqual((ref["kind"], ref["name"]), ("Deployment", dep["metadata"]["name"]))
        self.assertGreaterEqual(hpa["spec"]["minReplicas"], 2)
        self.assertEqual(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu")
        for c in dep["spec"]["template"]["spec"]["containers"]:
            self.assertIn("cpu", c["resources"]["requests"], "HPA on CPU needs requests: " +
                          c["name"])
            if c["name"] == "dnsveil":
                # a worker per requested CPU (workers: 0 would be one per
                # CPU of the node)
                self.assertEqual(self.cfg["workers"], int(c["resources"]["requests"]["cpu"]))
        pdb = self.one("PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], svc["spec"]["selector"])
        log("ok: Service %s -> named container ports of the same protocol; HPA -> Deployment "
            "%s, min %d" % (" ".join("%d/%s" % x for x in sorted(got)), ref["name"],
                            hpa["spec"]["minReplicas"]))

    def test_configmap_config_serves_and_probes_answer(self):
        u = self.start_unbound()
        cfg = yaml.safe_load(self.cfg_text)
        ports = {}  # manifest port -> the test's

        def swap(url):
            m = re.match(r"([a-z]+)://([^/]+):(\d+)(.*)$", url)
            p = int(m.group(3))
            if p not in ports:
                ports[p] = h.free_port()
            return "%s://127.0.0.1:%d%s" % (m.group(1), ports[p], m.group(4))
        cfg["listen"] = [swap(x) for x in cfg["listen"]]
        cfg["admin"]["listen"] = [swap(x) for x in cfg["admin"]["listen"]]
        cfg["upstream"] = [u.url("tcp")]
        cfg["fallback"] = []
        tmp = tempfile.mkdtemp(prefix="dv-k8s-run-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg["tls"] = dict(cfg["tls"], cert=h.CERT, key=h.KEY)
        cfg["tls"]["ticket-key-file"] = self.ticket_key_file(tmp)
        cfg["workers"] = 2
        path = os.path.join(tmp, "dnsveil.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f, default_flow_style=False)
        dns = [x for x in cfg["listen"] if x.startswith("dns://")][0]
        d = h.Dnsveil(listen=cfg["listen"], raw_args=["-c", path],
                      port=int(dns.rsplit(":", 1)[1]))
        self._dnsveils.append(d)
        d.start()  # waits until every listener answers a query
        admin = ports[admin_port(self.cfg)]
        spec = self.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
        for probe in ("livenessProbe", "readinessProbe"):
            path_ = spec[probe]["httpGet"]["path"]
            h.wait_for(lambda: h.curl("http://127.0.0.1:%d%s" % (admin, path_)).status == 200,
                       h.scaled(10), what="%s %s answering 200" % (probe, path_))
        self.assertEqual(h.curl("http://127.0.0.1:%d/metrics" % admin).status, 200)
        log("ok: the ConfigMap's config serves %s; %s and %s answer 200" % (
            " ".join(cfg["listen"]), spec["livenessProbe"]["httpGet"]["path"],
            spec["readinessProbe"]["httpGet"]["path"]))


if __name__ == "__main__":
    h.main()
