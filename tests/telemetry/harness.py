"""Shared pieces of the telemetry suite: a real OTLP/gRPC receiver (the
opentelemetry-proto collector services on grpcio), and helpers that start
`candor dev`, a 3-member `candor serve` cluster and a `--role api` front door."""

import os
import socket
import subprocess
import threading
import time
import urllib.request
from concurrent import futures

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)

BIN = os.environ.get("CANDOR_BIN", "target/debug/candor")


def free_port(ip="127.0.0.1"):
    s = socket.socket()
    s.bind((ip, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def attrs(kvs):
    out = {}
    for kv in kvs:
        v = kv.value
        kind = v.WhichOneof("value")
        out[kv.key] = getattr(v, kind) if kind else None
    return out


class Receiver:
    """OTLP/gRPC trace and metrics receiver holding everything it got."""

    def __init__(self):
        self.lock = threading.Lock()
        self.spans = []  # (resource attrs, span)
        self.metrics = []  # (resource attrs, metric)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        rx = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                with rx.lock:
                    for rs in request.resource_spans:
                        res = attrs(rs.resource.attributes)
                        for ss in rs.scope_spans:
                            for span in ss.spans:
                                rx.spans.append((res, span))
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):
                with rx.lock:
                    for rm in request.resource_metrics:
                        res = attrs(rm.resource.attributes)
                        for sm in rm.scope_metrics:
                            for m in sm.metrics:
                                rx.metrics.append((res, m))
                return metrics_service_pb2.ExportMetricsServiceResponse()

        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.stop(0)

    def latest_histogram_count(self, name):
        """Sum over data points of the newest export of histogram `name`
        (cumulative temporality: the newest export holds the totals)."""
        with self.lock:
            found = [m for _, m in self.metrics if m.name == name]
        if not found:
            return None
        return sum(p.count for p in found[-1].histogram.data_points)

    def span_list(self):
        with self.lock:
            return list(self.spans)


class HttpReceiver:
    """OTLP/HTTP (protobuf) receiver: POST /v1/traces and /v1/metrics, holding
    everything it got, in the same shape as `Receiver`."""

    def __init__(self):
        import http.server

        self.lock = threading.Lock()
        self.spans = []
        self.metrics = []
        self.paths = []
        rx = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ctype = self.headers.get("Content-Type", "")
                with rx.lock:
                    rx.paths.append((self.path, ctype))
                if ctype != "application/x-protobuf":
                    self.send_response(415)
                    self.end_headers()
                    return
                if self.path == "/v1/traces":
                    req = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    with rx.lock:
                        for rs in req.resource_spans:
                            res = attrs(rs.resource.attributes)
                            for ss in rs.scope_spans:
                                rx.spans.extend((res, sp) for sp in ss.spans)
                    out = trace_service_pb2.ExportTraceServiceResponse()
                elif self.path == "/v1/metrics":
                    req = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                    with rx.lock:
                        for rm in req.resource_metrics:
                            res = attrs(rm.resource.attributes)
                            for sm in rm.scope_metrics:
                                rx.metrics.extend((res, m) for m in sm.metrics)
                    out = metrics_service_pb2.ExportMetricsServiceResponse()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = out.SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    latest_histogram_count = Receiver.latest_histogram_count
    span_list = Receiver.span_list


def wait_until(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def http_get(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def run(args, env=None, check=True, timeout=60):
    p = subprocess.run(
        [BIN, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and p.returncode != 0:
        raise AssertionError(f"candor {' '.join(args)} failed: {p.returncode}\n{p.stderr}")
    return p


def base_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.pop("RUST_LOG", None)
    env["CANDOR_LOG"] = "info,openraft=warn"
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "500"
    env["OTEL_BSP_SCHEDULE_DELAY"] = "200"
    env.update(extra)
    return env


class Dev:
    """`candor dev` on loopback."""

    def __init__(self, tmp, env, extra_args=()):
        self.dir = tmp / "dev"
        self.port = free_port()
        self.metrics_port = free_port()
        self.target = f"http://127.0.0.1:{self.port}"
        self.log = open(tmp / "dev.log", "w")
        self.proc = subprocess.Popen(
            [BIN, "dev", "--data-dir", str(self.dir), "--listen", f"127.0.0.1:{self.port}",
             "--metrics-listen", f"127.0.0.1:{self.metrics_port}", "--shards", "4",
             "--epoch-interval", "200ms", *extra_args],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: http_get(f"http://127.0.0.1:{self.metrics_port}/readyz")[0] == 200,
                       60, "candor dev ready")
        except BaseException:
            self.stop()
            raise

    def client(self, *args):
        return ["--target", self.target, "--data-dir", str(self.dir), *args]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Cluster:
    """Three `candor serve --role all` members on 127.0.0.1..3 and a front door on 127.0.0.4."""

    def __init__(self, tmp, env, members=3):
        self.tmp = tmp
        self.env = env
        run(["keygen", "--dir", str(tmp / "keys")])
        self.members = []
        self.procs = []
        for i in range(1, members + 1):
            ip = f"127.0.0.{i}"
            self.members.append(dict(id=i, ip=ip, api=free_port(ip), raft=free_port(ip),
                                     metrics=free_port(ip)))
        self.procs = []
        try:
            self._start(tmp, members)
        except BaseException:
            self.stop()
            raise

    def _start(self, tmp, members):
        member_args = []
        for m in self.members:
            member_args += ["--member", f"{m['id']}={m['ip']}:{m['raft']}"]
        for m in self.members:
            args = ["serve", "--role", "all", "--dev-token", "--data-dir", str(tmp / f"data{m['id']}"),
                    "--keys-dir", str(tmp / "keys"), "--node-id", str(m["id"]),
                    "--listen", f"{m['ip']}:{m['api']}", "--raft-listen", f"{m['ip']}:{m['raft']}",
                    "--metrics-listen", f"{m['ip']}:{m['metrics']}",
                    "--epoch-interval", "300ms", "--shards", "4", *member_args]
            if m["id"] == 1:
                args.append("--bootstrap")
            self._spawn(args, f"member{m['id']}")
        self.front_port = free_port("127.0.0.4")
        self.front_metrics = free_port("127.0.0.4")
        front = ["serve", "--role", "api", "--listen", f"127.0.0.4:{self.front_port}",
                 "--metrics-listen", f"127.0.0.4:{self.front_metrics}",
                 "--data-dir", str(tmp / "front")]
        for m in self.members:
            front += ["--upstream", f"http://{m['ip']}:{m['api']}"]
        for m in self.members:
            wait_until(lambda m=m: http_get(f"http://{m['ip']}:{m['metrics']}/readyz")[0] == 200,
                       120, f"member {m['id']} ready")
        self._spawn(front, "front")
        wait_until(lambda: http_get(f"http://127.0.0.4:{self.front_metrics}/readyz")[0] == 200,
                   60, "front door ready")
        self.target = f"http://127.0.0.4:{self.front_port}"
        self.pin = tmp / "data1" / "config.bin"
        self.token = (tmp / "keys" / "dev-token").read_text().strip()

    def _spawn(self, args, name):
        log = open(self.tmp / f"{name}.log", "w")
        env = dict(self.env)
        env["OTEL_RESOURCE_ATTRIBUTES"] = f"candor.test.process={name}"
        self.procs.append((subprocess.Popen([BIN, *args], env=env, stdout=log,
                                            stderr=subprocess.STDOUT), log))

    def client(self, *args):
        return ["--target", self.target, "--pin", str(self.pin), "--token", self.token, *args]

    def metrics_targets(self):
        return [f"{m['ip']}:{m['metrics']}" for m in self.members]

    def stop(self):
        for p, _ in self.procs:
            p.terminate()
        for p, log in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            log.close()
