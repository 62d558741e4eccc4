"""Runs a rendered Kubernetes probe once, as the kubelet would (run inside the pod's
network namespace): `python probe.py '<probe JSON>' '<container ports JSON>'`.
Exit 0 when the probe succeeds, 1 otherwise, printing what it saw."""

import json
import socket
import sys


def port_of(probe_port, ports):
    if isinstance(probe_port, int):
        return probe_port
    return next(p["containerPort"] for p in ports if p["name"] == probe_port)


def main():
    probe, ports = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    timeout = probe.get("timeoutSeconds", 1)
    if "grpc" in probe:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        port = probe["grpc"]["port"]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            try:
                r = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=probe["grpc"].get("service", "")), timeout=timeout)
            except grpc.RpcError as e:
                print(f"grpc :{port}: {e.code()}")
                return 1
        print(f"grpc :{port}: {health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)}")
        return 0 if r.status == health_pb2.HealthCheckResponse.SERVING else 1
    if "tcpSocket" in probe:
        port = port_of(probe["tcpSocket"]["port"], ports)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
        except OSError as e:
            print(f"tcp :{port}: {e}")
            return 1
        print(f"tcp :{port}: open")
        return 0
    print(f"probe kind not emulated: {probe}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
