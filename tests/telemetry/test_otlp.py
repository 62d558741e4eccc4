"""OTLP against a real receiver (opentelemetry-proto collector services on grpcio).

Timing is printed, never asserted."""

import statistics
import time

from harness import Cluster, Dev, HttpReceiver, Receiver, attrs, base_env, run, wait_until


def test_otlp_dev_spans_and_metrics(tmp_path):
    rx = Receiver()
    env = base_env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    dev = Dev(tmp_path, env)
    try:
        publishes = 3
        for i in range(publishes):
            run(["publish", *dev.client(f"otlp-label-{i}", f"value-{i}")])
        run(["lookup", *dev.client("otlp-label-0")])

        # Metrics: SMT latency count equals the publishes (cumulative, newest export).
        wait_until(lambda: rx.latest_histogram_count("candor.smt.latency") == publishes,
                   30, f"candor.smt.latency count == {publishes}")

        def rpc_spans():
            return [(res, s) for res, s in rx.span_list() if s.name == "rpc"]

        def has(method):
            return any(attrs(s.attributes).get("method") == method for _, s in rpc_spans())

        wait_until(lambda: has("Publish") and has("Lookup"), 30, "Publish and Lookup spans")
        res, span = next((r, s) for r, s in rpc_spans()
                         if attrs(s.attributes).get("method") == "Publish")
        a = attrs(span.attributes)
        assert a.get("tenant") == "dev", a
        assert len(a.get("request_id", "")) > 0, a
        assert len(a.get("index", "")) == 8, a  # 4-byte index prefix, hex; never the label
        assert "otlp-label" not in str(a)
        assert res.get("service.name") == "candor", res
        assert res.get("service.instance.id") == "dev", res
        assert res.get("candor.role") == "dev", res
        assert res.get("service.namespace") == "candor-dev", res
        # The per-call server span is the rpc span's parent, in the same trace.
        servers = [s for _, s in rx.span_list() if s.name.endswith("/Publish")
                   and s.trace_id == span.trace_id]
        assert servers and span.parent_span_id == servers[0].span_id
        sattrs = attrs(servers[0].attributes)
        assert sattrs.get("rpc.system") == "grpc" and sattrs.get("rpc.grpc.status_code") == 0
    finally:
        dev.stop()
        rx.stop()


def test_otlp_http_protobuf_export(tmp_path):
    """OTLP over HTTP/protobuf (the OTLP default protocol): spans and metrics
    reach /v1/traces and /v1/metrics of a real HTTP receiver."""
    rx = HttpReceiver()
    env = base_env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint,
                   OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
    dev = Dev(tmp_path, env)
    try:
        publishes = 2
        for i in range(publishes):
            run(["publish", *dev.client(f"http-label-{i}", f"value-{i}")])
        wait_until(lambda: rx.latest_histogram_count("candor.smt.latency") == publishes,
                   30, f"candor.smt.latency count == {publishes} over HTTP")
        wait_until(lambda: any(s.name == "rpc" and attrs(s.attributes).get("method") == "Publish"
                               for _, s in rx.span_list()), 30, "a Publish span over HTTP")
        res = next(r for r, _ in rx.span_list())
        assert res.get("service.name") == "candor", res
        with rx.lock:
            paths = {p for p, _ in rx.paths}
        assert {"/v1/traces", "/v1/metrics"} <= paths, paths
    finally:
        dev.stop()
        rx.stop()


def _publish_latencies(dev, n, prefix):
    lat = []
    for i in range(n):
        t = time.monotonic()
        run(["publish", *dev.client(f"{prefix}-{i}", "v")])
        lat.append(time.monotonic() - t)
    return lat


def test_otlp_bad_collector_never_stops_publishes(tmp_path):
    """Unreachable and malformed collectors: every publish succeeds and the
    service stays up; latencies are printed next to a run without export."""
    n = 15
    results = {}
    for name, endpoint in [("none", None), ("unreachable", "http://127.0.0.1:9"),
                           ("malformed", "http://[::1")]:
        extra = {} if endpoint is None else {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                                             "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        d = tmp_path / name
        d.mkdir()
        dev = Dev(d, base_env(**extra))
        try:
            lat = _publish_latencies(dev, n, f"bad-{name}")
            assert dev.proc.poll() is None, f"candor dev exited with {name} collector"
            results[name] = lat
        finally:
            dev.stop()
    for name, lat in results.items():
        print(f"collector {name}: {len(lat)} publishes ok, median "
              f"{statistics.median(lat) * 1000:.1f} ms (CLI process included)")
        assert len(lat) == n


def test_otlp_one_trace_across_front_door_member_and_leader(tmp_path):
    rx = Receiver()
    env = base_env(OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    cluster = Cluster(tmp_path, env)
    try:
        for i in range(12):
            run(["publish", *cluster.client(f"trace-label-{i}", "v")])

        def three_process_trace():
            by_trace = {}
            for res, s in rx.span_list():
                by_trace.setdefault(s.trace_id, []).append((res, s))
            for tid, spans in by_trace.items():
                procs = {r.get("candor.test.process") for r, _ in spans}
                forwarded = any(attrs(s.attributes).get("rpc.service", "").startswith("candor.raft")
                                for _, s in spans)
                if "front" in procs and len(procs) >= 3 and forwarded:
                    return tid.hex(), sorted(procs)
            return None

        tid, procs = wait_until(three_process_trace, 60,
                                "one trace spanning the front door, a member and the shard leader")
        print(f"trace {tid} spans {procs}")
    finally:
        cluster.stop()
        rx.stop()
