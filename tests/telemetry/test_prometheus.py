"""A real Prometheus server scraping a 3-member cluster and its front door."""

import json
import pathlib
import re
import shutil
import subprocess
import urllib.parse

from harness import Cluster, base_env, free_port, http_get, run, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"

# Metrics that exist only after a rare event (or, for auditors, a later feature).
EVENT_ONLY = {
    "candor_auth_failures_total",
    "candor_limits_rejected_total",
    "candor_raft_snapshot_duration_seconds",
    "candor_raft_step_asides_total",
    "candor_store_write_stalls_total",
    "candor_store_damaged_records_total",
    "candor_auditor_cosigned_epoch",
}


def query(port, q):
    status, body = http_get(
        f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(q)}")
    if status != 200:
        return None
    return json.loads(body)["data"]["result"]


def referenced_metrics():
    """Metric names the dashboard and the alert rules use."""
    text = (OBS / "grafana" / "candor-dashboard.json").read_text()
    text += (OBS / "prometheus" / "candor-alerts.yml").read_text()
    names = set(re.findall(r"\b((?:candor|rpc_server|process)_[a-z_]+)", text))
    base = set()
    for n in names:
        for suffix in ("_bucket", "_count", "_sum"):
            if n.endswith(suffix):
                n = n[: -len(suffix)]
        base.add(n)
    return base


def test_prometheus_scrapes_cluster(tmp_path):
    prom = shutil.which("prometheus")
    assert prom, "prometheus not installed (tests/telemetry/run.sh installs it)"
    cluster = Cluster(tmp_path, base_env())
    port = free_port()
    targets = cluster.metrics_targets() + [f"127.0.0.4:{cluster.front_metrics}"]
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: ['{OBS / 'prometheus' / 'candor-alerts.yml'}']\n"
        "scrape_configs:\n  - job_name: candor\n    static_configs:\n"
        f"      - targets: {json.dumps(targets)}\n")
    log = open(tmp_path / "prometheus.log", "w")
    p = subprocess.Popen([prom, f"--config.file={tmp_path / 'prometheus.yml'}",
                          f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{port}"],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        for i in range(5):
            run(["publish", *cluster.client(f"prom-label-{i}", "v")])

        # Every member reports epochs signed (each applies and signs every epoch).
        def epochs():
            r = query(port, "candor_epoch_signed_total")
            return r if r and len(r) == 3 and all(float(x["value"][1]) > 0 for x in r) else None
        wait_until(epochs, 60, "candor_epoch_signed_total from the 3 members")

        # Exactly one leader per Raft group (4 shards + the sequencer).
        def leaders():
            r = query(port, "sum by (group) (candor_raft_is_leader)")
            if not r or len(r) != 5:
                return None
            return r if all(float(x["value"][1]) == 1 for x in r) else None
        groups = wait_until(leaders, 60, "exactly one leader in each of the 5 groups")
        print("leaders:", sorted(x["metric"]["group"] for x in groups))

        # The dashboard and the alerts only use metrics Candor serves.
        def missing():
            r = query(port, 'count by (__name__) ({__name__=~"candor_.*|rpc_server_.*|process_.*"})')
            if r is None:
                return None
            served = {x["metric"]["__name__"] for x in r}
            served |= {re.sub(r"_(bucket|count|sum)$", "", n) for n in served}
            want = referenced_metrics() - EVENT_ONLY
            gone = sorted(want - served)
            return "ok" if not gone else gone
        result = wait_until(lambda: missing() == "ok" or None, 30,
                            f"every referenced metric served (missing: {missing()})")
        assert result
        # No alert fires on a healthy cluster.
        status, body = http_get(f"http://127.0.0.1:{port}/api/v1/alerts")
        firing = [a for a in json.loads(body)["data"]["alerts"] if a["state"] == "firing"]
        assert not firing, firing
    finally:
        p.terminate()
        p.wait(15)
        log.close()
        cluster.stop()
