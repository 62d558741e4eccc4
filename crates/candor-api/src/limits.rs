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
    /// Largest gRPC message sent or accepted.
    pub max_message_bytes: u32,
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
        Ok(())
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
