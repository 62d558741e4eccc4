"""Static checks of the Kubernetes delivery: helm lint and template of every values
profile, the schema refusing bad values, every rendered object against the Kubernetes
OpenAPI schemas (kubernetes-validate, strict, the oldest supported minor), checkov on
the rendered chart and on terraform/, and terraform fmt/init/validate where the
providers are available offline."""

import json
import re
import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

import chart

# The oldest Kubernetes minor the chart supports (Chart.yaml kubeVersion): gRPC probes,
# StatefulSet PVC retention and the pod-index label are all there by 1.28.
KUBE_VERSION = "1.28.0"
PROFILES = ["embedded", "foundationdb", "minimal", "production"]
# Custom resources: their schemas come with their operators, not with Kubernetes.
CRDS = {
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("apps.foundationdb.org/v1beta2", "FoundationDBCluster"),
}
TERRAFORM = chart.ROOT / "terraform"
HERE = pathlib.Path(__file__).resolve().parent


def rendered(profile):
    objs, notes = chart.render(chart.profile(profile))
    return objs, notes


@pytest.mark.parametrize("profile", PROFILES)
def test_helm_lint_and_template(profile):
    import helm_python

    report = helm_python.lint(str(chart.CHART), chart.profile(profile), strict=True, namespace="kt")
    msgs = report.get("messages") or []
    for m in msgs:
        print(f"lint [{m.get('severity')}] {m.get('path')}: {m.get('error')}")
    assert not report.get("errors"), report["errors"]
    assert not [m for m in msgs if m.get("severity", 0) >= 2], msgs
    objs, notes = rendered(profile)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
    print(f"{profile}: {len(objs)} objects")
    assert notes.strip()
    assert any(k == "StatefulSet" for k, _ in kinds)
    assert any(k == "Deployment" for k, _ in kinds)
    assert any(k == "PodDisruptionBudget" for k, _ in kinds) or profile == "minimal"
    # Keys only from Secrets: no key material in any ConfigMap or env.
    for o in objs:
        text = json.dumps(o)
        assert "BEGIN PRIVATE KEY" not in text
    if profile == "foundationdb":
        assert ("FoundationDBCluster", "candor-fdb") in kinds
        assert {n for k, n in kinds if k == "StatefulSet"} == {"candor-shard", "candor-sequencer"}


def test_bad_values_are_refused():
    import helm_python

    c = chart.load()
    bad = yaml.safe_load((HERE / "bad-values.yaml").read_text())
    with pytest.raises(helm_python.HelmError) as e:
        c.validate_schema(c.merge_values(bad))
    msg = str(e.value)
    print(msg)
    for expected in ["/topology", "/config/shards", "/members/replicas", "/keys", "tokenHash"]:
        assert expected in msg, f"{expected} not named in: {msg}"
    with pytest.raises(helm_python.HelmError):
        c.render(bad, name="candor", namespace="kt")


@pytest.mark.parametrize("profile", PROFILES)
def test_kubernetes_validate_strict(profile):
    import kubernetes_validate

    objs, _ = rendered(profile)
    skipped = []
    for o in objs:
        o = {k: v for k, v in o.items() if k != "_template"}
        if (o["apiVersion"], o["kind"]) in CRDS:
            skipped.append(o["kind"])
            continue
        kubernetes_validate.validate(o, KUBE_VERSION, strict=True)
    print(f"{profile}: {len(objs) - len(skipped)} objects valid for Kubernetes {KUBE_VERSION} (strict); "
          f"custom resources not checked against a schema: {sorted(set(skipped)) or 'none'}")


def checkov():
    exe = os.environ.get("CHECKOV") or shutil.which("checkov")
    if not exe:
        pytest.skip("SKIPPED LOUDLY: checkov not installed (tests/k8s/run.sh installs it)")
    return exe


def run_checkov(args):
    # --skip-download: offline (no guideline download from the vendor's service).
    r = subprocess.run([checkov(), *args, "--compact", "--quiet", "--skip-download", "-o", "json"],
                       capture_output=True, text=True, timeout=600)
    try:
        out = json.loads(r.stdout or "[]")
    except json.JSONDecodeError:
        raise AssertionError(f"checkov: {r.stderr[-2000:]} {r.stdout[-2000:]}")
    reports = out if isinstance(out, list) else [out]
    failed, skipped = [], []
    for rep in reports:
        res = rep.get("results", {}) if isinstance(rep, dict) else {}
        failed += [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in res.get("failed_checks", [])]
        skipped += [f"{c['check_id']} {c['resource']}: {c.get('suppress_comment')}" for c in res.get("skipped_checks", [])]
    for s in skipped:
        print("checkov skip (justified in place):", s)
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("profile", PROFILES)
def test_checkov_chart(profile, tmp_path):
    objs, _ = rendered(profile)
    docs = [{k: v for k, v in o.items() if k != "_template"} for o in objs]
    f = tmp_path / f"{profile}.yaml"
    f.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    run_checkov(["-f", str(f), "--framework", "kubernetes"])


def test_checkov_dockerfile():
    run_checkov(["-f", str(chart.ROOT / "Dockerfile"), "--framework", "dockerfile"])


def test_dockerfile_matches_the_chart():
    """The image runs as the chart's user, with the binary on the default PATH."""
    text = (chart.ROOT / "Dockerfile").read_text()
    objs, _ = rendered("embedded")
    (sts,) = chart.find(objs, "StatefulSet")
    sc = sts["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert f"USER {sc['runAsUser']}:{sc['runAsGroup']}" in text
    assert "/usr/local/bin/candor" in text
    assert sts["spec"]["template"]["spec"]["containers"][0]["command"] == ["candor"]
    for ignored in ["target/", ".git/"]:
        assert ignored in (chart.ROOT / ".dockerignore").read_text()


def test_checkov_terraform():
    run_checkov(["-d", str(TERRAFORM), "--framework", "terraform"])


def terraform():
    exe = shutil.which("terraform")
    if not exe:
        pytest.skip("SKIPPED LOUDLY: terraform not installed")
    return exe


def test_terraform_fmt():
    r = subprocess.run([terraform(), "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def mirrored_providers():
    """Providers in the filesystem mirror named by TF_CLI_CONFIG_FILE (run.sh writes it)."""
    rc = os.environ.get("TF_CLI_CONFIG_FILE")
    if not rc or not os.path.exists(rc):
        return None, set()
    text = pathlib.Path(rc).read_text()
    path = text.split('path = "', 1)[1].split('"', 1)[0] if 'path = "' in text else None
    have = set()
    if path:
        base = pathlib.Path(path) / "registry.terraform.io"
        for ns in base.iterdir() if base.exists() else []:
            for p in ns.iterdir():
                have.add(f"{ns.name}/{p.name}")
    return path, have


def required_providers(module):
    import re

    need = set()
    for tf in module.glob("*.tf"):
        for m in re.finditer(r'source\s*=\s*"(?:registry\.terraform\.io/)?([\w-]+/[\w-]+)"', tf.read_text()):
            need.add(m.group(1))
    return need


def module_dirs():
    out = []
    for tf in sorted(TERRAFORM.rglob("*.tf")):
        if ".terraform" in tf.parts:
            continue
        if tf.parent not in out:
            out.append(tf.parent)
    return out


@pytest.mark.parametrize("module", [str(m.relative_to(TERRAFORM)) for m in module_dirs()])
def test_terraform_validate(module, tmp_path):
    exe = terraform()
    mod = TERRAFORM / module
    _, have = mirrored_providers()
    # A module's providers include those of the local modules it calls.
    need = set(required_providers(mod))
    for sub in mod.rglob("*.tf"):
        for line in sub.read_text().splitlines():
            if line.strip().startswith("source") and '"../' in line:
                target = (sub.parent / line.split('"')[1]).resolve()
                need |= required_providers(target)
    missing = sorted(need - have)
    if missing:
        pytest.skip(f"SKIPPED LOUDLY: terraform validate of {module}: providers {missing} are not in "
                    f"the offline mirror (fmt is still checked)")
    work = tmp_path / "tf"
    shutil.copytree(TERRAFORM, work)
    env = dict(os.environ, TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1")
    d = work / module
    r = subprocess.run([exe, "init", "-backend=false", "-input=false", "-no-color"], cwd=d,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = subprocess.run([exe, "validate", "-no-color"], cwd=d, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(r.stdout.strip())


def candor_bin():
    b = os.environ.get("CANDOR_BIN", "")
    if not b or not os.access(b, os.X_OK):
        pytest.skip("SKIPPED LOUDLY: CANDOR_BIN does not name the candor binary (run.sh sets it)")
    return b


def test_foundationdb_pods_accept_their_flags_and_config(tmp_path):
    """The foundationdb topology cannot run here (no FoundationDB, no libfdb_c): each
    rendered workload's args and ConfigMap go through the binary's parsing, role and
    key checks up to opening the store."""
    exe = candor_bin()
    objs, _ = rendered("foundationdb")
    cm = {o["metadata"]["name"]: o["data"] for o in chart.find(objs, "ConfigMap")}
    cfg = tmp_path / "candor.toml"
    cfg.write_text(cm["candor-config"]["candor.toml"])
    keys = tmp_path / "keys"
    subprocess.run([exe, "keygen", "--dir", str(keys)], check=True, capture_output=True)
    for o in chart.find(objs, "StatefulSet") + chart.find(objs, "Deployment"):
        ctr = o["spec"]["template"]["spec"]["containers"][0]
        assert ctr["command"] == ["candor"]
        args = [a.replace("/etc/candor/candor.toml", str(cfg)).replace("$(POD_NAME)", o["metadata"]["name"] + "-0")
                for a in ctr["args"]]
        # Files the pod gets from its volumes, here from the environment layer.
        env = dict(os.environ, CANDOR_CLUSTER__KEYS_DIR=str(keys), CANDOR_DATA_DIR=str(tmp_path / "data"),
                   RUST_LOG="error")
        r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, env=env)
        if "needs a candor binary built with FoundationDB support" not in r.stderr:
            pytest.skip(f"SKIPPED LOUDLY: {o['metadata']['name']}: this binary has FoundationDB support; "
                        f"it stopped with: {r.stderr.strip()[-300:]}")
        print(f"{o['metadata']['name']}: flags, config, role and keys accepted; stops at the store as expected")


def test_production_config_is_read_by_the_binary(tmp_path):
    exe = candor_bin()
    objs, _ = rendered("production")
    cm = {o["metadata"]["name"]: o["data"] for o in chart.find(objs, "ConfigMap")}
    cfg = tmp_path / "candor.toml"
    cfg.write_text(cm["candor-config"]["candor.toml"])
    # The front door's environment as the pod gets it (TLS on: the binary refuses a
    # plaintext API on 0.0.0.0 otherwise; the files are read only later).
    front = [d for d in chart.find(objs, "Deployment") if d["metadata"]["name"].endswith("-api")]
    assert front, "production renders a front-door Deployment"
    pod_env = {e["name"]: e["value"] for e in front[0]["spec"]["template"]["spec"]["containers"][0].get("env", [])
               if "value" in e}
    assert pod_env.get("CANDOR_TLS__API") == "true", pod_env
    env = dict(os.environ, **pod_env)
    # Without upstreams a front door stops right after reading the configuration.
    r = subprocess.run([exe, "serve", "--role=api", f"--config={cfg}"], capture_output=True, text=True,
                       timeout=60, env=env)
    if "telemetry" in r.stderr and "unknown field" in r.stderr:
        pytest.skip("SKIPPED LOUDLY: the production profile enables metrics (telemetry.metrics_listen), "
                    "which this binary does not have yet")
    assert "--upstream" in r.stderr, r.stderr


def quantity_bytes(q):
    """A Kubernetes memory quantity (Mi, Gi, or bytes) in bytes."""
    for suffix, factor in (("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)):
        if str(q).endswith(suffix):
            return int(str(q)[: -len(suffix)]) * factor
    return int(q)


@pytest.mark.parametrize("profile", PROFILES)
def test_memory_budget_follows_each_pod_limit(profile):
    """Every candor container gets CANDOR_MEMORY__BUDGET_BYTES, three quarters of
    its own memory limit: the caches are sized from it (docs/operations.md,
    "Memory"), and a role with a small limit gets a small budget."""
    objs, _ = rendered(profile)
    seen = 0
    for o in objs:
        if o["kind"] not in ("StatefulSet", "Deployment") or o["metadata"]["name"].endswith("-fdb"):
            continue
        for c in o["spec"]["template"]["spec"]["containers"]:
            if c["name"] != "candor":
                continue
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            budget = int(env["CANDOR_MEMORY__BUDGET_BYTES"])
            limit = quantity_bytes(c["resources"]["limits"]["memory"])
            print(f"{profile} {o['metadata']['name']}: budget {budget >> 20} MiB of a {limit >> 20} MiB limit")
            assert budget == limit * 3 // 4
            seen += 1
    assert seen >= 2


def test_a_memory_limit_the_chart_cannot_read_is_refused():
    with pytest.raises(Exception, match="resources.limits.memory"):
        chart.render({"members": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                                                "limits": {"cpu": "1", "memory": "1.5Gi"}}}})


def test_values_schema_is_generated():
    """values.schema.json is written by tests/k8s/tools/gen_values_schema.py."""
    import sys

    gen = HERE / "tools" / "gen_values_schema.py"
    out = subprocess.run([sys.executable, str(gen)], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == json.loads((chart.CHART / "values.schema.json").read_text()), \
        "regenerate: python3 tests/k8s/tools/gen_values_schema.py > helm/candor/values.schema.json"
