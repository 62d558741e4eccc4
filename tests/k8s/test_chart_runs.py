"""The chart runs: render helm/candor (embedded topology, 3 members, 2 front doors) and
start exactly the rendered pods' containers (command, args, env, ConfigMap, Secret and
volume paths) as local processes, each pod in its own network namespace on a private
bridge, with /etc/netns/<pod>/hosts mapping the headless-Service names. Each container
runs in its own mount namespace with the pod's volumes bind-mounted at the rendered
paths, as the rendered non-root user with the fsGroup as supplementary group, so the
paths, modes and ownership are those a kubelet would give it.

Then: publish through a front door, verify lookups through the other, SIGKILL the pod
leading shard 0 and check the service goes on, scale up (a fourth pod joins by itself
with --join) and down (the rendered pre-upgrade Job removes it).

Needs root, `ip netns`, `unshare`, `setpriv`; skips loudly otherwise. Bounded: every
wait has a deadline; the whole test takes well under 4 minutes.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import pathlib

import pytest

import chart

NS = "kt"  # Kubernetes namespace the chart is rendered for
PREFIX = "ck"  # network namespace / interface prefix of this test
SUBNET = "10.213.0"
BIN = os.environ.get("CANDOR_BIN", "")
VALUES = {
    "members": {"replicas": 3},
    "api": {"replicas": 2, "autoscaling": {"enabled": False}},
    # Fewer shards: fewer Raft groups to form and to change on scale up/down.
    "config": {"shards": 4, "epochIntervalMs": 500, "namespace": "candor-k8s-test"},
}


def sh(*cmd, check=True, **kw):
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True, **kw)


def preconditions():
    if os.geteuid() != 0:
        return "not root: network namespaces need root"
    for tool in ("ip", "unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if not BIN or not os.access(BIN, os.X_OK):
        return "CANDOR_BIN does not name the candor binary (tests/k8s/run.sh sets it)"
    r = sh("ip", "netns", "add", f"{PREFIX}-probe", check=False)
    if r.returncode != 0:
        return f"ip netns unavailable: {r.stderr.strip()}"
    sh("ip", "netns", "del", f"{PREFIX}-probe", check=False)
    return None


def expand(s, env):
    """Kubernetes $(VAR) expansion in command, args and env values."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), s)


class Cluster:
    """Pods as processes: network namespaces, volumes, containers."""

    def __init__(self, work):
        self.work = work
        self.pods = {}  # name -> dict(ip, ns, vols, proc, log)
        self.created_paths = []  # host mount points this test created
        self.procs = []
        self.hosts = {}  # DNS name -> ip
        self.next_ip = 10
        sh("ip", "netns", "add", f"{PREFIX}-sw")
        sh("ip", "-n", f"{PREFIX}-sw", "link", "add", f"{PREFIX}br", "type", "bridge")
        sh("ip", "-n", f"{PREFIX}-sw", "link", "set", f"{PREFIX}br", "up")
        self.bin = work / "bin"
        self.bin.mkdir()
        shutil.copy(BIN, self.bin / "candor")

    # -- network ----------------------------------------------------------------
    def add_netns(self, pod):
        ns = f"{PREFIX}-{pod}"
        ip = f"{SUBNET}.{self.next_ip}"
        idx = self.next_ip
        self.next_ip += 1
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"{PREFIX}v{idx}", "netns", f"{PREFIX}-sw", "type", "veth",
           "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", f"{PREFIX}-sw", "link", "set", f"{PREFIX}v{idx}", "master", f"{PREFIX}br", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
        self.pods[pod] = {"ip": ip, "ns": ns, "vols": {}, "proc": None}
        return ip

    def write_hosts(self):
        lines = ["127.0.0.1 localhost"] + [f"{ip} {name}" for name, ip in sorted(self.hosts.items())]
        for p in self.pods.values():
            pathlib.Path(f"/etc/netns/{p['ns']}/hosts").write_text("\n".join(lines) + "\n")

    # -- volumes ------------------------------------------------------------------
    def volume_dir(self, pod, name, fs_group):
        d = self.work / "pods" / pod / name
        if not d.exists():
            d.mkdir(parents=True)
            # fsGroup: the kubelet gives the volume to the group, setgid.
            os.chown(d, 0, fs_group)
            os.chmod(d, 0o2775)
        return d

    def materialize(self, pod, spec, configmaps, secrets, pvc_names, fs_group):
        vols = {}
        for v in spec.get("volumes", []):
            name = v["name"]
            if "configMap" in v:
                d = self.work / "pods" / pod / f"cm-{name}"
                d.mkdir(parents=True, exist_ok=True)
                data = configmaps[v["configMap"]["name"]]
                items = v["configMap"].get("items") or [{"key": k, "path": k} for k in data]
                for it in items:
                    (d / it["path"]).write_text(data[it["key"]])
                    os.chmod(d / it["path"], 0o644)
                vols[name] = d
            elif "secret" in v:
                d = self.work / "pods" / pod / f"secret-{name}"
                d.mkdir(parents=True, exist_ok=True)
                data = secrets[v["secret"]["secretName"]]
                mode = v["secret"].get("defaultMode", 0o644)
                items = v["secret"].get("items") or [{"key": k, "path": k} for k in data]
                for it in items:
                    f = d / it["path"]
                    f.write_bytes(data[it["key"]])
                    # Kubelet: defaultMode, plus group read and the fsGroup's ownership.
                    os.chown(f, 0, fs_group)
                    os.chmod(f, mode | 0o440)
                os.chmod(d, 0o755)
                vols[name] = d
            elif "projected" in v:
                d = self.work / "pods" / pod / f"projected-{name}"
                d.mkdir(parents=True, exist_ok=True)
                mode = v["projected"].get("defaultMode", 0o644)
                for src in v["projected"]["sources"]:
                    data = secrets[src["secret"]["name"]]
                    for it in src["secret"]["items"]:
                        f = d / it["path"]
                        f.parent.mkdir(parents=True, exist_ok=True)
                        os.chmod(f.parent, 0o755)
                        f.write_bytes(data[it["key"]])
                        os.chown(f, 0, fs_group)
                        os.chmod(f, mode | 0o440)
                os.chmod(d, 0o755)
                vols[name] = d
            elif "emptyDir" in v:
                vols[name] = self.volume_dir(pod, f"empty-{name}", fs_group)
            else:
                raise AssertionError(f"volume kind not emulated: {v}")
        for claim in pvc_names:
            vols[claim] = self.volume_dir(pod, f"pvc-{claim}", fs_group)
        self.pods[pod]["vols"].update(vols)
        return vols

    def mount_point(self, path, is_file):
        p = pathlib.Path(path)
        missing = []
        q = p
        while not q.exists():
            missing.append(q)
            q = q.parent
        for m in reversed(missing):
            if m == p and is_file:
                m.touch()
            else:
                m.mkdir()
            self.created_paths.append(m)

    # -- containers ----------------------------------------------------------------
    def container_script(self, pod, container, security):
        vols = self.pods[pod]["vols"]
        lines = ["set -e"]
        for vm in container.get("volumeMounts", []):
            src = vols[vm["name"]]
            if vm.get("subPath"):
                src = src / vm["subPath"]
            self.mount_point(vm["mountPath"], src.is_file())
            lines.append(f"mount --bind '{src}' '{vm['mountPath']}'")
            if vm.get("readOnly"):
                lines.append(f"mount -o remount,bind,ro '{vm['mountPath']}'")
        uid = container["securityContext"]["runAsUser"]
        gid = container["securityContext"]["runAsGroup"]
        fs_group = security["fsGroup"]
        env = {"POD_NAME": pod, "HOSTNAME": pod, "PATH": f"{self.bin}:/usr/bin:/bin"}
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = expand(e["value"], env)
            elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env[e["name"]] = pod
            else:
                raise AssertionError(f"env source not emulated: {e}")
        argv = [expand(a, env) for a in container.get("command", []) + container.get("args", [])]
        caps = container["securityContext"]["capabilities"]["drop"]
        assert caps == ["ALL"], caps
        quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in argv)
        lines.append(
            f"exec setpriv --reuid={uid} --regid={gid} --groups={fs_group} "
            f"--inh-caps=-all --bounding-set=-all --no-new-privs -- {quoted}"
        )
        return "\n".join(lines), env

    def run(self, pod, container, security, *, wait, log_name=None):
        script, env = self.container_script(pod, container, security)
        log = self.work / "logs" / f"{log_name or pod + '-' + container['name']}.log"
        log.parent.mkdir(exist_ok=True)
        out = open(log, "ab")
        cmd = ["ip", "netns", "exec", self.pods[pod]["ns"], "unshare", "--mount",
               "--propagation", "private", "--", "sh", "-c", script]
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd="/")
        self.procs.append(proc)
        if wait:
            rc = proc.wait(timeout=60)
            assert rc == 0, f"{pod}/{container['name']} exited {rc}: {log.read_text()[-2000:]}"
        return proc, log

    def start_pod(self, pod, template, configmaps, secrets, pvcs, wait_main=False, main=True):
        spec = template["spec"]
        security = spec["securityContext"]
        if pod not in self.pods:
            self.add_netns(pod)
            self.write_hosts()
        self.materialize(pod, spec, configmaps, secrets, pvcs, security["fsGroup"])
        for init in spec.get("initContainers", []):
            self.run(pod, init, security, wait=True)
        if not main:
            return None
        (main,) = spec["containers"]
        proc, log = self.run(pod, main, security, wait=wait_main)
        self.pods[pod]["proc"] = proc
        self.pods[pod]["log"] = log
        self.pods[pod]["template"] = template
        return proc

    def restart_main(self, pod):
        p = self.pods[pod]
        (main,) = p["template"]["spec"]["containers"]
        proc, _ = self.run(pod, main, p["template"]["spec"]["securityContext"], wait=False)
        p["proc"] = proc

    def kill(self, pod):
        proc = self.pods[pod]["proc"]
        if proc and proc.poll() is None:
            # `ip netns exec`, `unshare`, `sh` and `setpriv` all exec: the pid is candor's.
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def exec(self, pod, argv, timeout=60):
        """A command in the pod's network (kubectl exec), as root, host mounts."""
        return subprocess.run(
            ["ip", "netns", "exec", self.pods[pod]["ns"], *argv],
            capture_output=True, text=True, timeout=timeout,
        )

    def probe(self, pod, kind):
        """The pod's rendered readiness or liveness probe, run once as the kubelet would
        (from the pod's network namespace)."""
        import sys

        (main,) = self.pods[pod]["template"]["spec"]["containers"]
        r = subprocess.run(
            ["ip", "netns", "exec", self.pods[pod]["ns"], sys.executable,
             str(pathlib.Path(__file__).with_name("probe.py")),
             json.dumps(main[kind]), json.dumps(main.get("ports", []))],
            capture_output=True, text=True, timeout=30,
        )
        return r.returncode == 0, r.stdout.strip()

    def cleanup(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        for p in self.pods.values():
            sh("ip", "netns", "del", p["ns"], check=False)
            shutil.rmtree(f"/etc/netns/{p['ns']}", ignore_errors=True)
        sh("ip", "netns", "del", f"{PREFIX}-sw", check=False)
        for path in reversed(self.created_paths):
            try:
                path.unlink() if path.is_file() else path.rmdir()
            except OSError:
                pass


def wait_for(what, fn, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            got = fn()
            if got:
                return got
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last = e
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last: {last})")


@pytest.fixture
def cluster():
    why = preconditions()
    if why:
        pytest.skip(f"SKIPPED LOUDLY: the chart-runs test needs root and network namespaces: {why}")
    work = pathlib.Path(tempfile.mkdtemp(prefix="candor-k8s-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    c = Cluster(work)
    try:
        yield c
    finally:
        c.cleanup()
        if os.environ.get("KEEP_K8S_WORK"):
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def test_chart_runs(cluster):
    c = cluster
    objects, notes = chart.render(VALUES, namespace=NS)
    cm = {o["metadata"]["name"]: o["data"] for o in chart.find(objects, "ConfigMap")}
    (sts,) = chart.find(objects, "StatefulSet")
    (api,) = chart.find(objects, "Deployment")
    (headless,) = [s for s in chart.find(objects, "Service") if s["spec"].get("clusterIP") == "None"]
    (svc,) = chart.find(objects, "Service", "candor")
    jobs = {j["metadata"]["name"]: j for j in chart.find(objects, "Job")}
    assert "candor publish" in notes and "candor lookup" in notes

    # Names: the pods' stable DNS names and the API Service.
    domain = f"{headless['metadata']['name']}.{NS}.svc.cluster.local"
    members = [f"{sts['metadata']['name']}-{i}" for i in range(sts["spec"]["replicas"])]
    fronts = [f"{api['metadata']['name']}-{i}" for i in range(api["spec"]["replicas"])]
    assert len(members) == 3 and len(fronts) == 2
    for pod in members + ["candor-3", "client", "keygen", "shrink"] + fronts:
        ip = c.add_netns(pod)
        c.hosts[f"{pod}.{domain}"] = ip
    # The API Service (ClusterIP) stands for the first front door.
    c.hosts[f"{svc['metadata']['name']}.{NS}.svc.cluster.local"] = c.pods[fronts[0]]["ip"]
    c.write_hosts()

    # The pre-install Job generates the keys; its second container (kubectl) turns the
    # directory into the Secret the members mount, which is what is emulated here.
    keygen = jobs["candor-keygen"]["spec"]["template"]
    c.start_pod("keygen", keygen, cm, {}, [], main=False)
    kubectl = keygen["spec"]["containers"][0]["command"]
    assert kubectl[:4] == ["kubectl", "create", "secret", "generic"], kubectl
    secret_name, from_file = kubectl[4], kubectl[5].split("=", 1)[1]
    assert from_file.startswith("/keys/")
    keydir = c.pods["keygen"]["vols"]["keys"] / from_file[len("/keys/"):]
    secrets = {secret_name: {f.name: f.read_bytes() for f in keydir.iterdir()}}
    assert set(secrets[secret_name]) == {"vrf.key", "head.key", "smt.key", "dev-token"}
    token = secrets[secret_name]["dev-token"].decode().strip()

    pvcs = [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]]
    for pod in members:
        c.start_pod(pod, sts["spec"]["template"], cm, secrets, pvcs)
    for pod in fronts:
        c.start_pod(pod, api["spec"]["template"], cm, secrets, [])

    member_pin = c.pods[members[0]]["vols"]["data"] / "config.bin"
    wait_for("config.bin on member 0", lambda: member_pin.exists(), 60)
    # What a client pins (copied out, as NOTES.txt says).
    pin = c.work / "config.bin"
    shutil.copy(member_pin, pin)
    target = f"http://{svc['metadata']['name']}.{NS}.svc.cluster.local:{svc['spec']['ports'][0]['port']}"
    other = f"http://{c.pods[fronts[1]]['ip']}:8700"
    admin = f"{members[0]}.{domain}:8701"

    def cli(*args, timeout=60):
        r = c.exec("client", [str(c.bin / "candor"), *args], timeout=timeout)
        return r

    def publish(label, value):
        def once():
            r = cli("publish", "--target", target, "--pin", str(pin), "--token", token,
                    "--idempotency-key", f"k8s-{label}", "--wait", "--json", label, value)
            if r.returncode != 0:
                raise RuntimeError(r.stderr.strip()[-300:])
            return json.loads(r.stdout)
        return wait_for(f"publish {label}", once, 90)

    def lookup(label, via):
        r = cli("lookup", "--target", via, "--pin", str(pin), "--json", label)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["verified"] and out["found"], out
        return out["value"]

    def check_all(published):
        for label, value in published.items():
            for via in (target, other):
                got = wait_for(f"lookup {label}", lambda: lookup(label, via) == value, 30)
                assert got

    def status():
        r = cli("cluster", "status", "--json", "--admin", admin)
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        return json.loads(r.stdout)

    published = {}
    for i in range(4):
        label, value = f"user{i}@example.com", f"key-{i}"
        publish(label, value)
        published[label] = value
    check_all(published)
    print(f"published and verified {len(published)} labels through both front doors")
    # The rendered probes pass on every pod (ports and health service as rendered).
    for pod in members + fronts:
        for kind in ("readinessProbe", "livenessProbe"):
            ok, seen = wait_for(f"{kind} of {pod}", lambda: (lambda r: r if r[0] else None)(c.probe(pod, kind)), 30)
            print(f"{pod} {kind}: {seen}")

    # Kill the pod leading shard 0 (SIGKILL, as a node loss); the service goes on.
    st = wait_for("a shard 0 leader", lambda: [g for g in status()["groups"] if g["group"] == 0 and g["leader"]], 30)
    leader = st[0]["leader"]
    victim = members[leader - 1]
    if victim == members[0]:
        admin = f"{members[1]}.{domain}:8701"
    print(f"shard 0 is led by node {leader} ({victim}): SIGKILL")
    c.kill(victim)
    for i in range(4, 8):
        label, value = f"user{i}@example.com", f"key-{i}"
        publish(label, value)
        published[label] = value
    check_all(published)
    new = wait_for("a new shard 0 leader", lambda: [g["leader"] for g in status()["groups"] if g["group"] == 0 and g["leader"] and g["leader"] != leader], 30)
    print(f"after the kill: shard 0 led by node {new[0]}; {len(published)} labels verified")

    # The kubelet restarts the container; the member catches up.
    c.restart_main(victim)

    # Scale up to 4: the pod template must not change (no rolling restart of the
    # existing members), and the new pod joins every group by itself (--join).
    up, _ = chart.render({**VALUES, "members": {"replicas": 4}}, namespace=NS, upgrade=True)
    (sts4,) = chart.find(up, "StatefulSet")
    assert sts4["spec"]["template"] == sts["spec"]["template"], "scaling changed the pod template"
    c.start_pod("candor-3", sts4["spec"]["template"], cm, secrets, pvcs)

    def voter_everywhere(node):
        groups = status()["groups"]
        return groups and all(node in g["voters"] for g in groups)

    wait_for("node 4 to vote in every group", lambda: voter_everywhere(4), 120)
    wait_for("candor-3 ready", lambda: c.probe("candor-3", "readinessProbe")[0], 60)
    publish("after-scale-up@example.com", "v4")
    published["after-scale-up@example.com"] = "v4"
    print("node 4 (candor-3) joined every group by itself")

    # Scale back to 3: the pre-upgrade hook Job removes node 4 before the pod goes.
    down, _ = chart.render(VALUES, namespace=NS, upgrade=True)
    (shrink,) = [j for j in chart.find(down, "Job") if j["metadata"]["annotations"].get("helm.sh/hook") == "pre-upgrade"]
    c.start_pod("shrink", shrink["spec"]["template"], cm, secrets, [], wait_main=True)
    print((c.work / "logs" / "shrink-shrink.log").read_text())

    def gone(node):
        groups = status()["groups"]
        return groups and all(node not in g["voters"] and node not in g["learners"] for g in groups)

    wait_for("node 4 removed from every group", lambda: gone(4), 60)
    c.kill("candor-3")
    # Node restarts are not removals: the restarted victim still votes everywhere.
    wait_for(f"node {leader} voting after its restart", lambda: voter_everywhere(leader), 60)
    publish("after-scale-down@example.com", "v3")
    published["after-scale-down@example.com"] = "v3"

    # Pod 0 comes back on an empty volume (a lost disk): it must not bootstrap a new
    # deployment, and must not come back as a voter that forgot its log: it is removed
    # from the groups, rejoins as a new member and catches up from its peers.
    admin = f"{members[1]}.{domain}:8701"
    c.kill(members[0])
    data0 = c.pods[members[0]]["vols"]["data"]
    for entry in data0.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    c.restart_main(members[0])
    # Alive (liveness) while not ready: an empty member is not SERVING until it holds
    # a signed epoch of its own replicas.
    wait_for("candor-0 alive", lambda: c.probe(members[0], "livenessProbe")[0], 30)
    wait_for("node 1 voting again", lambda: voter_everywhere(1), 90)
    member0 = f"http://{c.pods[members[0]]['ip']}:8700"
    for label, value in published.items():
        wait_for(f"lookup {label} on the rebuilt member 0", lambda: lookup(label, member0) == value, 60)
    log0 = c.pods[members[0]]["log"].read_text()
    assert "not bootstrapping" in log0
    # It lost its log: it was removed from the groups and added back as a new member.
    assert "removed from every group; rejoining" in log0, log0[-3000:]
    print("member 0 rebuilt from an empty volume without bootstrapping")
    check_all(published)
    # Retried: the front door spreads the audit's calls over members, and a member
    # that lags (member 0 just rebuilt) answers NOT_FOUND "epoch N is not signed" for
    # an epoch another member already served, which the front door does not retry
    # elsewhere (it moves on only on UNAVAILABLE).
    def audit():
        r = cli("audit", "--target", target, "--pin", str(pin))
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip())
        return True
    try:
        wait_for("a full audit through the front door", audit, 60)
    except AssertionError:
        print(json.dumps(status(), indent=1))
        for pod in members:
            print(pod, c.pods[pod]["log"].read_text()[-3000:])
        raise
    print(f"scale down removed node 4; {len(published)} labels verified; audit ok")

    # Restore from one member's volume (docs/operations.md, "Backup and restore"):
    # every member stops, pods 1 and 2 come back empty, pod 0 with its volume.
    for pod in members:
        c.kill(pod)
    for pod in members[1:]:
        data = c.pods[pod]["vols"]["data"]
        for entry in data.iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for pod in members:
        c.restart_main(pod)
    for label, value in published.items():
        for pod in members:
            via = f"http://{c.pods[pod]['ip']}:8700"
            wait_for(f"lookup {label} on {pod} after the restore", lambda: lookup(label, via) == value, 90)
    publish("after-restore@example.com", "v5")
    print("restored from member 0's volume: every member serves every label")

    # Signing-key rotation (docs/operations.md, "Rotating the signing keys"). Step 1:
    # the next key version goes into the keys Secret and the members roll; the chart
    # pins signing_key_version = 1, so nothing changes yet.
    rot = c.work / "keys-rotation"
    rot.mkdir()
    for name, data in secrets[secret_name].items():
        (rot / name).write_bytes(data)
        os.chmod(rot / name, 0o600)
    os.chmod(rot, 0o700)
    r = cli("keys", "rotate", "--dir", str(rot))
    assert r.returncode == 0, r.stderr
    for name in ("head-2.key", "smt-2.key"):
        secrets[secret_name][name] = (rot / name).read_bytes()

    def roll(configmaps):
        for pod in members:
            c.kill(pod)
            c.start_pod(pod, sts["spec"]["template"], configmaps, secrets, pvcs)
            wait_for(f"{pod} ready", lambda: c.probe(pod, "readinessProbe")[0], 90)

    roll(cm)
    assert all((c.pods[pod]["vols"]["keys"] / "head-2.key").exists() for pod in members)
    publish("before-rotation@example.com", "v6")
    assert not any("signing keys rotated" in c.pods[p]["log"].read_text() for p in members)
    # Step 2: signingKeyVersion 2, roll again; the sequencer leader rotates.
    objects2, _ = chart.render({**VALUES, "config": {**VALUES["config"], "signingKeyVersion": 2}}, namespace=NS, upgrade=True)
    cm2 = {o["metadata"]["name"]: o["data"] for o in chart.find(objects2, "ConfigMap")}
    assert "signing_key_version = 2" in next(iter(v["candor.toml"] for v in cm2.values() if "candor.toml" in v))
    roll(cm2)
    wait_for("the rotation", lambda: any("signing keys rotated" in c.pods[p]["log"].read_text() for p in members), 60)
    # Clients keep the pin they had: they follow the rotation and verify every head,
    # those signed before it included.
    publish("after-rotation@example.com", "v7")
    published["after-rotation@example.com"] = "v7"
    check_all(published)
    wait_for("a full audit across the rotation", audit, 60)
    print("rotated the signing keys to version 2; old pin, every label and the audit verify")


def test_chart_runs_with_tls(cluster):
    """tls.enabled with existing Secrets: mutual TLS between the members (node ids in
    the certificates), TLS on the API and from the front doors to the members, the
    membership Job with its admin certificate."""
    c = cluster
    values = {**VALUES, "tls": {"enabled": True, "memberSecretPrefix": "tls-", "apiSecret": "tls-api",
                                "adminSecret": "tls-admin"}}
    objects, _ = chart.render(values, namespace=NS, upgrade=True)
    cm = {o["metadata"]["name"]: o["data"] for o in chart.find(objects, "ConfigMap")}
    (sts,) = chart.find(objects, "StatefulSet")
    (api,) = chart.find(objects, "Deployment")
    (shrink,) = [j for j in chart.find(objects, "Job") if j["metadata"]["annotations"].get("helm.sh/hook") == "pre-upgrade"]
    domain = f"candor-headless.{NS}.svc.cluster.local"
    members = [f"candor-{i}" for i in range(3)]
    fronts = ["candor-api-0", "candor-api-1"]
    service = f"candor.{NS}.svc.cluster.local"
    for pod in members + ["client", "shrink"] + fronts:
        c.hosts[f"{pod}.{domain}"] = c.add_netns(pod)
    c.hosts[service] = c.pods[fronts[0]]["ip"]
    c.write_hosts()

    # Certificates: every member's names its node id; the front doors' (node 99's,
    # used only as a server and client certificate) names the Service.
    certs = c.work / "certs"
    hosts = [a for h in [f"{p}.{domain}" for p in members] + [service] for a in ("--host", h)]
    r = sh(str(c.bin / "candor"), "tls", "gen-dev-certs", "--dir", str(certs), "--nodes", "1,2,3,99", *hosts)
    ca = (certs / "ca.crt").read_bytes()
    secrets = {}
    for i, pod in enumerate(members):
        secrets[f"tls-{pod}"] = {"tls.crt": (certs / f"node-{i + 1}.crt").read_bytes(),
                                 "tls.key": (certs / f"node-{i + 1}.key").read_bytes(), "ca.crt": ca}
    secrets["tls-api"] = {"tls.crt": (certs / "node-99.crt").read_bytes(),
                          "tls.key": (certs / "node-99.key").read_bytes(), "ca.crt": ca}
    secrets["tls-admin"] = {"tls.crt": (certs / "admin.crt").read_bytes(),
                            "tls.key": (certs / "admin.key").read_bytes(), "ca.crt": ca}
    keys = c.work / "keys"
    sh(str(c.bin / "candor"), "keygen", "--dir", str(keys))
    secrets["candor-keys"] = {f.name: f.read_bytes() for f in keys.iterdir()}
    token = secrets["candor-keys"]["dev-token"].decode().strip()

    pvcs = [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]]
    for pod in members:
        c.start_pod(pod, sts["spec"]["template"], cm, secrets, pvcs)
    for pod in fronts:
        c.start_pod(pod, api["spec"]["template"], cm, secrets, [])
    member_pin = c.pods[members[0]]["vols"]["data"] / "config.bin"
    wait_for("config.bin on member 0", lambda: member_pin.exists(), 60)
    pin = c.work / "config.bin"
    shutil.copy(member_pin, pin)
    tls = ["--tls-ca", str(certs / "ca.crt")]

    def cli(*args):
        return c.exec("client", [str(c.bin / "candor"), *args])

    def publish(label, value):
        def once():
            r = cli("publish", "--target", f"https://{service}:8700", "--pin", str(pin), *tls,
                    "--token", token, "--idempotency-key", f"tls-{label}", "--wait", label, value)
            if r.returncode != 0:
                raise RuntimeError(r.stderr.strip()[-300:])
            return True
        wait_for(f"publish {label} over TLS", once, 90)

    publish("tls@example.com", "over-tls")
    r = cli("lookup", "--target", f"https://{service}:8700", "--pin", str(pin), *tls, "--json", "tls@example.com")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["value"] == "over-tls"
    # Plaintext to a TLS API fails.
    r = cli("lookup", "--target", f"http://{service}:8700", "--pin", str(pin), "tls@example.com")
    assert r.returncode != 0
    # Raft admin port: mutual TLS; the operator's certificate may read the status.
    r = cli("cluster", "status", "--json", "--admin", f"{members[0]}.{domain}:8701", *tls,
            "--tls-cert", str(certs / "admin.crt"), "--tls-key", str(certs / "admin.key"))
    assert r.returncode == 0, r.stderr
    groups = json.loads(r.stdout)["groups"]
    assert groups and all(sorted(g["voters"]) == [1, 2, 3] for g in groups), groups
    # The membership Job speaks mutual TLS with its admin certificate.
    c.start_pod("shrink", shrink["spec"]["template"], cm, secrets, [], wait_main=True)
    assert "nothing to remove" in (c.work / "logs" / "shrink-shrink.log").read_text()
    print("TLS: publish and lookup over TLS through the front door, mTLS between members and for the Job")
