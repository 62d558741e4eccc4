//! Operational limits (advertised in `GetConfigResponse.limits`).

use serde::{Deserialize, Serialize};

/// Limits enforced on every request. Not signed: they may change between
/// releases without changing the configuration digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Maximum label length in bytes (labels are 1..=this).
    pub max_label_bytes: u32,
    /// Maximum value length in bytes.
    pub max_value_bytes: u32,
    /// Maximum items in one PublishBatch.
    pub max_batch_items: u32,
    /// Maximum idempotency key length in bytes.
    pub max_idempotency_key_bytes: u32,
    /// How long the shard layer remembers idempotency keys (advertised).
    pub idempotency_retention_ms: u64,
    /// Largest gRPC message sent (responses: audit and history proofs).
    pub max_message_bytes: u32,
    /// Largest request body of a read (`Lookup`, `History`, `Audit`, ...,
    /// health, reflection): refused with RESOURCE_EXHAUSTED past this while it
    /// arrives. Not advertised.
    pub max_read_request_bytes: u32,
    /// Largest `PublishBatch` request body. (A single `Publish` may be
    /// `max_label_bytes + max_value_bytes + max_idempotency_key_bytes + 1 KiB`.)
    pub max_batch_request_bytes: u32,
    /// Request-body bytes held at once by the whole process, and by one tenant's
    /// writes: past either, RESOURCE_EXHAUSTED.
    pub max_inflight_request_bytes: u64,
    pub max_tenant_inflight_request_bytes: u64,
    /// Open API connections; one more is closed at accept (logged, counted).
    /// Never more than half the process's open-files limit.
    pub max_connections: u32,
    /// A connection with no traffic for this long is closed (HTTP/2 keepalive
    /// pings count as traffic).
    pub idle_timeout_ms: u64,
    /// Concurrent calls (HTTP/2 streams) per connection.
    pub max_concurrent_streams: u32,
    /// Items a tenant may publish per second, sustained (0: no limit); bursts of
    /// up to `tenant_burst_items`. Past it: RESOURCE_EXHAUSTED with the delay in
    /// `retry-after-ms` (and `grpc-retry-pushback-ms`).
    pub tenant_items_per_second: u32,
    pub tenant_burst_items: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_label_bytes: 1024,
            max_value_bytes: 64 * 1024,
            max_batch_items: 1000,
            max_idempotency_key_bytes: 128,
            idempotency_retention_ms: 24 * 3600 * 1000,
            max_message_bytes: 64 << 20,
            max_read_request_bytes: 16 << 10,
            max_batch_request_bytes: 8 << 20,
            max_inflight_request_bytes: 256 << 20,
            max_tenant_inflight_request_bytes: 64 << 20,
            max_connections: 1000,
            idle_timeout_ms: 120_000,
            max_concurrent_streams: 256,
            tenant_items_per_second: 20_000,
            tenant_burst_items: 40_000,
        }
    }
}

impl Limits {
    /// Checks the limits are usable together.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_label_bytes == 0 {
            return Err("max_label_bytes must be at least 1".into());
        }
        if self.max_batch_items == 0 {
            return Err("max_batch_items must be at least 1".into());
        }
        if self.max_value_bytes as usize > candor_core::proof::MAX_VALUE_LEN {
            return Err(format!(
                "max_value_bytes must be at most {} (the proof format's limit)",
                candor_core::proof::MAX_VALUE_LEN
            ));
        }
        // A single publish of a maximal label and value must fit a message.
        let one = u64::from(self.max_label_bytes) + u64::from(self.max_value_bytes) + 1024;
        if u64::from(self.max_message_bytes) < one.max(4 << 20) {
            return Err(format!(
                "max_message_bytes must be at least {} (4 MiB and a maximal publish)",
                one.max(4 << 20)
            ));
        }
        let publish = self.max_publish_request_bytes();
        if u64::from(self.max_read_request_bytes) < u64::from(self.max_label_bytes) + 1024 {
            return Err(format!(
                "max_read_request_bytes must be at least max_label_bytes + 1024 ({})",
                u64::from(self.max_label_bytes) + 1024
            ));
        }
        if u64::from(self.max_batch_request_bytes) < publish {
            return Err(format!(
                "max_batch_request_bytes must hold one maximal publish ({publish} bytes)"
            ));
        }
        if self.max_tenant_inflight_request_bytes < publish
            || self.max_inflight_request_bytes < self.max_tenant_inflight_request_bytes
        {
            return Err(format!(
                "need {publish} (one maximal publish) <= max_tenant_inflight_request_bytes <= max_inflight_request_bytes"
            ));
        }
        if self.max_connections == 0 || self.max_concurrent_streams == 0 {
            return Err("max_connections and max_concurrent_streams must be at least 1".into());
        }
        if self.idle_timeout_ms < 1000 {
            return Err("idle_timeout_ms must be at least 1000".into());
        }
        if self.tenant_items_per_second > 0 && self.tenant_burst_items < self.max_batch_items {
            return Err(
                "tenant_burst_items must be at least max_batch_items (a full batch must fit)"
                    .into(),
            );
        }
        Ok(())
    }

    /// Largest `Publish` request body.
    pub fn max_publish_request_bytes(&self) -> u64 {
        u64::from(self.max_label_bytes)
            + u64::from(self.max_value_bytes)
            + u64::from(self.max_idempotency_key_bytes)
            + 1024
    }

    /// The largest request of any method (tonic's decoding limit).
    pub fn max_request_bytes(&self) -> usize {
        (self
            .max_batch_request_bytes
            .max(self.max_read_request_bytes) as u64)
            .max(self.max_publish_request_bytes()) as usize
    }

    pub(crate) fn to_proto(&self) -> candor_proto::candor::v1::ServiceLimits {
        candor_proto::candor::v1::ServiceLimits {
            max_label_bytes: self.max_label_bytes,
            max_value_bytes: self.max_value_bytes,
            max_batch_items: self.max_batch_items,
            max_idempotency_key_bytes: self.max_idempotency_key_bytes,
            idempotency_retention_ms: self.idempotency_retention_ms,
            max_message_bytes: self.max_message_bytes,
        }
    }
}
