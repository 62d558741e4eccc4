# Generates helm/candor/values.schema.json: python3 tests/k8s/tools/gen_values_schema.py > helm/candor/values.schema.json
import json
def obj(props, required=None, desc=None, extra=False, description=None):
    desc = desc or description
    o = {"type": "object", "additionalProperties": extra, "properties": props}
    if required: o["required"] = required
    if desc: o["description"] = desc
    return o
def s(desc=None, **kw):
    o = {"type": "string", **kw}
    if desc: o["description"] = desc
    return o
def i(desc=None, **kw):
    o = {"type": "integer", **kw}
    if desc: o["description"] = desc
    return o
b = lambda d=None: ({"type": "boolean", "description": d} if d else {"type": "boolean"})
anyobj = {"type": "object"}
qty = {"anyOf": [{"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$"}, {"type": "number", "minimum": 0}]}
res = obj({
    "requests": obj({"cpu": qty, "memory": qty}, ["cpu", "memory"]),
    "limits": obj({"cpu": qty, "memory": qty}, ["cpu", "memory"]),
}, ["requests", "limits"], "Resource requests and limits (both required: sized from measured memory).")
size = s("Volume size, e.g. 20Gi.", pattern="^[0-9]+(Mi|Gi|Ti)$")
hex64 = s("64 hex characters.", pattern="^[0-9a-fA-F]{64}$")
schema = {
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Candor Helm chart values",
  "type": "object",
  "additionalProperties": False,
  "properties": {
    "topology": s("embedded: Raft members on the embedded store; foundationdb: shard/sequencer/api roles over FoundationDB.", enum=["embedded", "foundationdb"]),
    "image": obj({
        "repository": s(minLength=1),
        "tag": s(),
        "digest": s("sha256:<64 hex>, or empty.", pattern="^(|sha256:[0-9a-f]{64})$"),
        "pullPolicy": s(enum=["Always", "IfNotPresent", "Never"]),
    }, ["repository"]),
    "imagePullSecrets": {"type": "array", "items": obj({"name": s(minLength=1)}, ["name"])},
    "nameOverride": s(maxLength=40),
    "fullnameOverride": s(maxLength=40),
    "clusterDomain": s(pattern="^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$"),
    "config": obj({
        "namespace": s("Deployment name bound into every signature: 1..255 printable ASCII.", minLength=1, maxLength=255, pattern="^[\\x21-\\x7e]+$"),
        "shards": {"type": "integer", "enum": [2**k for k in range(17)], "description": "Number of shards: a power of two, 1..65536."},
        "epochIntervalMs": i("Time between epochs, ms (100 and up).", minimum=100),
        "maxMergeDelayMs": i("Maximum merge delay, ms (at least epochIntervalMs).", minimum=100),
        "sealIntervalMs": i("How often shards seal pending labels, ms.", minimum=1),
        "log": s(minLength=1),
        "signingKeyVersion": {"type": ["integer", "null"], "minimum": 1, "description": "Head and SMT key version to sign with (key rotation); the keys Secret must hold head-N.key and smt-N.key for every version up to it. Null: version 1."},
        "api": obj({
            "devToken": b("Tenant dev with the token in the keys Secret."),
            "insecure": b("Without tls.enabled: serve the API in clear on the pod network (api.insecure); the binary refuses a plaintext non-loopback API otherwise."),
            "tenants": {"type": "array", "items": obj({"name": s(minLength=1), "tokenHash": hex64}, ["name", "tokenHash"])},
            "auditorKeys": {"type": "array", "items": hex64},
            "vrfCacheEntries": i(minimum=1),
            "viewCacheEpochs": i(minimum=1),
            "limits": {"type": "object", "additionalProperties": False, "description": "[api.limits] keys of the binary (crates/candor-api/src/limits.rs); the binary checks their ranges at start.", "properties": {k: i(minimum=0) for k in [
                "max_label_bytes", "max_value_bytes", "max_batch_items", "max_idempotency_key_bytes", "idempotency_retention_ms", "max_message_bytes", "max_read_request_bytes", "max_batch_request_bytes", "max_inflight_request_bytes", "max_tenant_inflight_request_bytes", "max_connections", "idle_timeout_ms", "max_concurrent_streams", "tenant_items_per_second", "tenant_burst_items"]}},
        }),
        "store": obj({"cacheBytes": i(minimum=0), "memtableBytes": i(minimum=1048576), "treeCacheBytes": i(minimum=0)}),
    }, ["namespace", "shards"]),
    "keys": obj({
        "existingSecret": s("A Secret with vrf.key, head.key, smt.key and dev-token."),
        "generate": obj({"enabled": b(), "kubectlImage": s(minLength=1)}),
    }, description="Keys only from Secrets: existingSecret, or the pre-install keygen Job. Never key material in values."),
    "ports": obj({k: i(minimum=1, maximum=65535) for k in ["api", "raft", "metrics"]}),
    "members": obj({
        "replicas": i("Raft members: 1, or 3+ to tolerate a loss (odd counts).", minimum=1, maximum=999),
        "resources": res,
        "persistence": obj({"size": size, "storageClassName": s(), "accessModes": {"type": "array", "items": s(enum=["ReadWriteOnce", "ReadWriteOncePod"]), "minItems": 1}}, ["size"]),
        "pvcRetention": obj({"whenDeleted": s(enum=["Retain", "Delete"]), "whenScaled": s(enum=["Retain", "Delete"])}),
        "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
        "tolerations": {"type": "array"},
        "priorityClassName": s(),
        "terminationGracePeriodSeconds": i(minimum=1),
    }, ["replicas", "resources"]),
    "api": obj({
        "replicas": i(minimum=1),
        "resources": res,
        "autoscaling": obj({"enabled": b(), "minReplicas": i(minimum=1), "maxReplicas": i(minimum=1), "targetCPUUtilizationPercentage": i(minimum=1, maximum=100)}),
        "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
        "tolerations": {"type": "array"},
        "priorityClassName": s(),
    }, ["replicas", "resources"]),
    "service": obj({"type": s(enum=["ClusterIP", "LoadBalancer", "NodePort"]), "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}),
    "foundationdb": obj({
        "clusterFileConfigMap": s(), "clusterFileKey": s(minLength=1), "clusterName": s(minLength=1),
        "create": b("Also render a FoundationDBCluster for the operator."),
        "version": s(pattern="^7\\.[3-9]\\.[0-9]+$", description="FoundationDB 7.3 or newer (Candor selects API version 730)."),
        "processCounts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "redundancyMode": s(enum=["single", "double", "triple", "three_data_hall"]),
        "storage": size,
        "shards": obj({"replicas": i(minimum=1, maximum=999), "nodeIdBase": i(minimum=1), "resources": res, "persistence": obj({"size": size})}),
        "sequencers": obj({"replicas": i(minimum=1, maximum=999), "nodeIdBase": i(minimum=1), "resources": res, "persistence": obj({"size": size})}),
    }),
    "probes": obj({
        "grpc": obj({"readiness": obj({"periodSeconds": i(minimum=1), "failureThreshold": i(minimum=1), "timeoutSeconds": i(minimum=1)})}),
        "http": obj({"enabled": b("HTTP /readyz and /healthz: needs a binary with the metrics listener.")}),
    }),
    "metrics": obj({
        "enabled": b("Serve /metrics (telemetry.metrics_listen): needs a binary with the metrics listener."),
        "serviceMonitor": obj({"enabled": b(), "interval": s(pattern="^[0-9]+(s|m)$"), "labels": {"type": "object"}}),
        "prometheusRule": obj({"enabled": b(), "labels": {"type": "object"}}),
    }),
    "tls": obj({
        "enabled": b(),
        "certManager": obj({"enabled": b(), "issuerRef": obj({"name": s(), "kind": s(enum=["Issuer", "ClusterIssuer"]), "group": s()}), "duration": s(), "renewBefore": s()}),
        "memberSecretPrefix": s(), "apiSecret": s(), "adminSecret": s(),
    }),
    "membership": obj({"shrinkOnUpgrade": b("Pre-upgrade Job removing members past the new replica count.")}),
    "podDisruptionBudget": obj({"enabled": b()}),
    "topologySpread": obj({"zones": b(), "whenUnsatisfiable": s(enum=["ScheduleAnyway", "DoNotSchedule"]), "antiAffinity": s(enum=["preferred", "required"])}),
    "networkPolicy": obj({"enabled": b(), "apiFrom": {"type": "array", "items": {"type": "object"}}, "metricsFrom": {"type": "array", "items": {"type": "object"}}}),
    "storageClass": obj({"create": b(), "name": s(minLength=1), "provisioner": s(minLength=1), "parameters": {"type": "object", "additionalProperties": {"type": "string"}}, "reclaimPolicy": s(enum=["Retain", "Delete"])}),
    "serviceAccount": obj({"create": b(), "name": s(), "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}),
    "podAnnotations": {"type": "object", "additionalProperties": {"type": "string"}},
    "podLabels": {"type": "object", "additionalProperties": {"type": "string"}},
  },
  "required": ["topology", "image", "config", "keys", "members", "api"],
  "allOf": [
    {"if": {"properties": {"tls": {"properties": {"enabled": {"const": True}, "certManager": {"properties": {"enabled": {"const": False}}}}}}},
     "then": {"properties": {"tls": {"properties": {"apiSecret": {"minLength": 1}, "memberSecretPrefix": {"minLength": 1}}}}},
     "description": "tls.enabled without cert-manager needs tls.apiSecret and tls.memberSecretPrefix."},
    {"if": {"properties": {"keys": {"properties": {"existingSecret": {"const": ""}}}}},
     "then": {"properties": {"keys": {"properties": {"generate": {"properties": {"enabled": {"const": True}}}}}}},
     "description": "Keys: set keys.existingSecret or keep keys.generate.enabled."},
  ],
}
print(json.dumps(schema, indent=2))
