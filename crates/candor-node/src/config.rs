//! The server configuration: one serde struct tree with defaults, shared by every
//! role (`candor dev`, `candor serve`, the Helm chart's ConfigMap). The binary
//! layers it (defaults → TOML file → `CANDOR_*` environment → flags) and calls
//! [`Config::validate`] at start-up; every message names the key at fault.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use candor_api::Limits;
use serde::{Deserialize, Serialize};

use crate::NodeError;

macro_rules! bail {
    ($($t:tt)*) => { return Err(NodeError::Config(format!($($t)*))) };
}

/// Top-level keys; the environment provider only reads these, so unrelated
/// `CANDOR_*` variables of the client commands (CANDOR_TARGET, CANDOR_TOKEN,
/// ...) never reach the strict server configuration.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "namespace",
    "data_dir",
    "listen",
    "log",
    "epoch_interval_ms",
    "max_merge_delay_ms",
    "seal_interval_ms",
    "shards",
    "api",
    "store",
    "memory",
    "cluster",
    "tls",
    "telemetry",
    "signing_key_version",
];

/// The whole server configuration. Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Deployment name, bound into every signature (1..=255 printable ASCII).
    pub namespace: String,
    /// Where keys, the dev token, `config.bin` and the store live.
    pub data_dir: PathBuf,
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Log filter (tracing-subscriber `EnvFilter` syntax); `RUST_LOG` wins.
    pub log: String,
    /// Target time between epochs (100 ms and up).
    pub epoch_interval_ms: u64,
    /// Maximum merge delay promised by SMTs (≥ the epoch interval).
    pub max_merge_delay_ms: u64,
    /// How often shards seal pending labels.
    pub seal_interval_ms: u64,
    /// Number of shards: a power of two, 1..=65536.
    pub shards: u32,
    /// `[api]`: the public API (tenants, auditors, limits, caches).
    pub api: ApiConfig,
    /// `[store]`: the backend and cache budgets.
    pub store: StoreConfig,
    /// `[memory]`: the process's memory budget, which sizes the caches not set
    /// one by one (see [`crate::memory`]).
    pub memory: crate::memory::MemoryConfig,
    /// Cluster membership (`candor serve` only; `candor dev` ignores it).
    pub cluster: ClusterConfig,
    /// TLS for the cluster port and the public API (off by default).
    pub tls: TlsSettings,
    /// Metrics, traces and log format.
    pub telemetry: TelemetrySettings,
    /// Head and SMT key version to sign with (key rotation, docs/operations.md): the
    /// sequencer leader activates it, one version at a time, when it is newer than
    /// the deployment's. Unset: the highest version in the key directory
    /// (`head-N.key`, `smt-N.key`; `candor keys rotate` makes the next one).
    pub signing_key_version: Option<u32>,
}

/// `telemetry.*`: the Prometheus/probe listener, OTLP export (the standard
/// `OTEL_*` variables fill what is unset here) and the log format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// HTTP listener for `/metrics`, `/healthz` and `/readyz` (off when unset).
    pub metrics_listen: Option<SocketAddr>,
    /// `text` or `json` (JSON lines carry trace_id and span_id).
    pub log_format: LogFormat,
    /// OTLP collector, e.g. `http://collector:4317` (else `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf` (else `OTEL_EXPORTER_OTLP_PROTOCOL`, else http/protobuf).
    pub otlp_protocol: Option<OtlpProtocol>,
}

/// `telemetry.log_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    /// Human-readable lines.
    Text,
    /// JSON lines.
    Json,
}

/// `telemetry.otlp_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "grpc")]
    /// OTLP over gRPC.
    Grpc,
    #[serde(rename = "http/protobuf")]
    /// OTLP over HTTP with protobuf bodies.
    HttpProtobuf,
}

/// `[tls]`: certificate files (PEM) and where TLS is on. The files are loaded and
/// checked at start-up (`candor`'s TLS loading); see docs/operations.md, "TLS and mutual TLS".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// This process's certificate chain (leaf first). A member's names it with the SAN
    /// URI `candor-node://<node_id>` plus the host names / IPs peers dial.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`.
    pub key: Option<PathBuf>,
    /// CA bundle that issues the cluster's certificates (peers are checked against it).
    pub ca: Option<PathBuf>,
    /// Mutual TLS on `cluster.raft_listen` (Raft transport and cluster admin) and for
    /// this member's outgoing Raft and admin calls. Needs cert, key, ca.
    pub cluster: bool,
    /// TLS on the public API (`listen`); for `--role api` also towards the upstreams.
    pub api: bool,
    /// Public API identity, if not `cert` / `key` (e.g. from a public CA).
    pub api_cert: Option<PathBuf>,
    /// The private key of `api_cert`.
    pub api_key: Option<PathBuf>,
    /// When set, API clients must present a certificate issued by this CA bundle.
    pub api_client_ca: Option<PathBuf>,
    /// `--role api`: CA bundle to check the members' API certificates (default `ca`).
    pub upstream_ca: Option<PathBuf>,
}

impl TlsSettings {
    /// Checks which keys are needed, naming them (the files are read by `candor`'s TLS loading).
    pub fn validate(&self) -> Result<(), NodeError> {
        if self.cert.is_some() != self.key.is_some() {
            bail!("tls.cert and tls.key go together: set both or neither");
        }
        if self.api_cert.is_some() != self.api_key.is_some() {
            bail!("tls.api_cert and tls.api_key go together: set both or neither");
        }
        if self.cluster && (self.cert.is_none() || self.ca.is_none()) {
            bail!("tls.cluster = true needs tls.cert, tls.key and tls.ca");
        }
        if self.api && self.cert.is_none() && self.api_cert.is_none() {
            bail!("tls.api = true needs tls.cert and tls.key (or tls.api_cert and tls.api_key)");
        }
        Ok(())
    }
}

/// Where this member sits in a cluster. Every member holds a replica of every
/// shard group and of the sequencer group (`--role all`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This member's Raft id: unique in the deployment, stable across restarts, > 0.
    pub node_id: u64,
    /// Where this member's Raft service listens (internal; peers use the address
    /// given for this id in `members`).
    pub raft_listen: SocketAddr,
    /// Every voting member: id and the `host:port` of its Raft service.
    pub members: Vec<MemberConfig>,
    /// Initialize the groups of a brand-new deployment (a no-op once they exist).
    /// Set it on exactly one member, by convention the smallest id.
    pub bootstrap: bool,
    /// Directory holding the deployment's shared keys (`candor keygen --dir DIR`),
    /// the same on every member. Default: `data_dir/keys`.
    pub keys_dir: Option<PathBuf>,
    /// `--role api` only: the members' API addresses it forwards to.
    pub upstreams: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: 0,
            raft_listen: "127.0.0.1:8701".parse().expect("valid default address"),
            members: Vec::new(),
            bootstrap: false,
            keys_dir: None,
            upstreams: Vec::new(),
        }
    }
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Its Raft node id (> 0, unique).
    pub id: u64,
    /// `host:port` of the member's Raft service.
    pub raft_addr: String,
    /// Which groups the member hosts: `all` (default), or, with a shared store
    /// (`store.backend = "fdb"`), `shard` or `sequencer`.
    #[serde(default)]
    pub role: MemberRole,
    /// Shared store only, shard members: the shards whose groups this member hosts, as
    /// ranges (`"0-7,12"`). Default: every shard. Writes for other shards are forwarded
    /// to the members hosting them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<String>,
}

/// The groups a cluster member hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// A replica of every shard group and of the sequencer group.
    #[default]
    All,
    /// A replica of every shard group (shared store only).
    Shard,
    /// A replica of the sequencer group (shared store only).
    Sequencer,
}

impl std::fmt::Display for MemberRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemberRole::All => "all",
            MemberRole::Shard => "shard",
            MemberRole::Sequencer => "sequencer",
        })
    }
}

impl ClusterConfig {
    /// Checks what `candor serve` needs, naming the key at fault.
    pub fn validate(&self) -> Result<(), NodeError> {
        if self.node_id == 0 {
            bail!("cluster.node_id must be set to this member's id (> 0), e.g. --node-id 1");
        }
        if self.members.is_empty() {
            bail!("cluster.members must list every member, e.g. --member 1=10.0.0.1:8701");
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, m) in self.members.iter().enumerate() {
            if m.id == 0 {
                bail!("cluster.members[{i}].id must be > 0");
            }
            if !seen.insert(m.id) {
                bail!("cluster.members lists id {} twice", m.id);
            }
            if m.raft_addr.trim().is_empty() {
                bail!("cluster.members[{i}].raft_addr must not be empty");
            }
        }
        if !seen.contains(&self.node_id) {
            bail!(
                "cluster.node_id {} is not among cluster.members ({:?})",
                self.node_id,
                seen
            );
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            namespace: "candor-dev".into(),
            data_dir: PathBuf::from("./candor-data"),
            listen: "127.0.0.1:8700".parse().expect("valid default address"),
            log: "info,openraft=warn".into(),
            epoch_interval_ms: 1000,
            max_merge_delay_ms: 10_000,
            seal_interval_ms: 100,
            shards: 16,
            api: ApiConfig::default(),
            store: StoreConfig::default(),
            memory: crate::memory::MemoryConfig::default(),
            cluster: ClusterConfig::default(),
            tls: TlsSettings::default(),
            telemetry: TelemetrySettings::default(),
            signing_key_version: None,
        }
    }
}

/// The API front door.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Request, connection and rate limits (`[api.limits]`).
    pub limits: Limits,
    /// Tenants allowed to write, each with the hash of its bearer token
    /// (`candor hash-token TOKEN`).
    pub tenants: Vec<TenantConfig>,
    /// Accept the bearer token of tenant `dev` (generated on first start into
    /// `data_dir/dev-token`, or read from the keys directory of a cluster).
    /// Unset: on for `candor dev`, off for `candor serve` (a production member
    /// accepts no dev token unless asked: `--dev-token` or `dev_token = true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev_token: Option<bool>,
    /// `candor serve` refuses to serve the public API in clear on an address
    /// other than loopback (bearer tokens would cross the network unprotected)
    /// unless `tls.api` is on or this is set (`--insecure`): TLS terminated in
    /// front of Candor, or a trusted network.
    pub insecure: bool,
    /// Auditor Ed25519 public keys (64 hex) whose cosignatures are stored.
    pub auditor_keys: Vec<String>,
    /// Cached VRF evaluations (entries). Unset: a share of `memory.budget_bytes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vrf_cache_entries: Option<usize>,
    /// Cached map views (epochs).
    pub view_cache_epochs: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            limits: Limits::default(),
            tenants: Vec::new(),
            dev_token: None,
            insecure: false,
            auditor_keys: Vec::new(),
            vrf_cache_entries: None,
            view_cache_epochs: 8,
        }
    }
}

/// One tenant allowed to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's name (in logs and metrics).
    pub name: String,
    /// 64 hex characters: `candor hash-token TOKEN`.
    pub token_hash: String,
}

/// Embedded store and cache budgets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Where the state lives: `embedded` (fjall under `data_dir`, the default) or `fdb`
    /// (FoundationDB, shared by every member and API node; needs a binary built with
    /// `--features fdb`). Members keep their Raft logs in the embedded store either way.
    pub backend: StoreBackend,
    /// `fdb`: the cluster file. Default: `FDB_CLUSTER_FILE`, then
    /// `/etc/foundationdb/fdb.cluster`.
    pub fdb_cluster_file: Option<PathBuf>,
    /// Block cache of the embedded store, bytes. Unset (as the three below): a
    /// share of `memory.budget_bytes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_bytes: Option<u64>,
    /// Memtable size, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memtable_bytes: Option<u64>,
    /// Tree node cache, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree_cache_bytes: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Embedded,
            fdb_cluster_file: None,
            cache_bytes: None,
            memtable_bytes: None,
            tree_cache_bytes: None,
        }
    }
}

/// Where the state lives (`store.backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// fjall under `data_dir`: every member holds its own copy.
    #[default]
    Embedded,
    /// FoundationDB: one shared copy.
    Fdb,
}

impl Config {
    /// `candor serve`: the public API in clear on a non-loopback address needs
    /// `api.insecure` (`--insecure`); `tls.api` is the production answer.
    pub fn check_plaintext_api(&self) -> Result<(), NodeError> {
        if self.tls.api || self.api.insecure || self.listen.ip().is_loopback() {
            return Ok(());
        }
        bail!(
            "listen = {} is not a loopback address and tls.api is off: bearer tokens and \
             lookups would cross the network in clear. Turn on TLS (tls.api = true with \
             tls.cert and tls.key, or CANDOR_TLS__API=true; docs/operations.md), or pass \
             --insecure (api.insecure = true) when TLS ends in front of Candor",
            self.listen
        )
    }

    /// How the memory budget is divided (see [`crate::memory`]), for a process
    /// hosting every group: one per shard and the sequencer's.
    pub fn memory_plan(&self) -> Result<crate::memory::MemoryPlan, NodeError> {
        crate::memory::MemoryPlan::new(self, u64::from(self.shards) + 1)
    }

    /// `log2(shards)`.
    pub fn shard_bits(&self) -> u8 {
        self.shards.trailing_zeros() as u8
    }

    /// Checks every value, with messages that name the key.
    pub fn validate(&self) -> Result<(), NodeError> {
        candor_core::signed::validate_namespace(&self.namespace)
            .map_err(|e| NodeError::Config(format!("namespace: {e}")))?;
        if !self.shards.is_power_of_two() || self.shards > 1 << 16 {
            bail!(
                "shards must be a power of two between 1 and 65536, got {}",
                self.shards
            );
        }
        if self.epoch_interval_ms < 100 {
            bail!(
                "epoch_interval_ms must be at least 100, got {}",
                self.epoch_interval_ms
            );
        }
        if self.memory.trim_interval_ms != 0 && self.memory.trim_interval_ms < 1_000 {
            bail!(
                "memory.trim_interval_ms must be 0 (never trim) or at least 1000: a trim \
                 takes up to about 100 ms on a large heap, one arena lock at a time, got {}",
                self.memory.trim_interval_ms
            );
        }
        if self.max_merge_delay_ms < self.epoch_interval_ms {
            bail!(
                "max_merge_delay_ms ({}) must be at least epoch_interval_ms ({})",
                self.max_merge_delay_ms,
                self.epoch_interval_ms
            );
        }
        if self.seal_interval_ms == 0 || self.seal_interval_ms >= self.max_merge_delay_ms {
            bail!(
                "seal_interval_ms must be > 0 and below max_merge_delay_ms ({}), got {}",
                self.max_merge_delay_ms,
                self.seal_interval_ms
            );
        }
        self.api
            .limits
            .validate()
            .map_err(|e| NodeError::Config(format!("api.limits: {e}")))?;
        for (i, t) in self.api.tenants.iter().enumerate() {
            if t.name.is_empty() {
                bail!("api.tenants[{i}].name must not be empty");
            }
            parse_hex32(&t.token_hash).map_err(|e| {
                NodeError::Config(format!(
                    "api.tenants[{i}].token_hash (use `candor hash-token TOKEN`): {e}"
                ))
            })?;
        }
        for (i, k) in self.api.auditor_keys.iter().enumerate() {
            parse_hex32(k).map_err(|e| NodeError::Config(format!("api.auditor_keys[{i}]: {e}")))?;
        }
        if self.api.view_cache_epochs == 0 {
            bail!("api.view_cache_epochs must be at least 1");
        }
        // The memory plan depends on the role (how many Raft groups the process
        // hosts; a front door sizes no cache): each role checks its own at start.
        self.tls.validate()?;
        Ok(())
    }
}

impl Config {
    /// The voters of the shard groups and of the sequencer group, from
    /// `cluster.members`.
    pub fn member_sets(&self) -> (BTreeMap<u64, String>, BTreeMap<u64, String>) {
        let mut shards = BTreeMap::new();
        let mut sequencer = BTreeMap::new();
        for m in &self.cluster.members {
            if matches!(m.role, MemberRole::All | MemberRole::Shard) {
                shards.insert(m.id, m.raft_addr.clone());
            }
            if matches!(m.role, MemberRole::All | MemberRole::Sequencer) {
                sequencer.insert(m.id, m.raft_addr.clone());
            }
        }
        (shards, sequencer)
    }

    /// The shard placement from `cluster.members[].shards` ([`crate::member::placement`]).
    pub fn placement(&self) -> Result<BTreeMap<u32, Vec<u64>>, NodeError> {
        let members: Vec<(u64, Option<&str>)> = (self.cluster.members.iter())
            .filter(|m| matches!(m.role, MemberRole::All | MemberRole::Shard))
            .map(|m| (m.id, m.shards.as_deref()))
            .collect();
        crate::member::placement(self.shards, &members)
    }

    /// `candor serve --role` against the configuration (`role`: the member role, or
    /// `None` for `--role api`): shard and sequencer members need a shared store, and a
    /// member's role must be the one `cluster.members` gives it.
    pub fn check_role(&self, role: Option<MemberRole>) -> Result<(), NodeError> {
        let name = role.map_or("api".to_string(), |r| r.to_string());
        let shared = self.store.backend == StoreBackend::Fdb;
        if !shared {
            if matches!(role, Some(MemberRole::Shard | MemberRole::Sequencer)) {
                bail!(
                    "candor serve --role {name}: separate shard and sequencer members need a \
                     shared store (--store fdb, i.e. store.backend = \"fdb\"); on the embedded \
                     store every member holds every group: run members with --role all and \
                     stateless front doors with --role api"
                );
            }
            if let Some(m) = self.cluster.members.iter().find(|m| m.shards.is_some()) {
                bail!(
                    "cluster member {} lists shards: a shard placement needs a shared store \
                     (store.backend = \"fdb\"); on the embedded store every member hosts every \
                     shard",
                    m.id
                );
            }
            if let Some(m) = self
                .cluster
                .members
                .iter()
                .find(|m| m.role != MemberRole::All)
            {
                bail!(
                    "cluster member {} has role {}: only `all` members exist on the embedded \
                     store (store.backend = \"fdb\" for separate roles)",
                    m.id,
                    m.role
                );
            }
            return Ok(());
        }
        let Some(want) = role else {
            return Ok(());
        };
        self.cluster.validate()?;
        let me = (self.cluster.members.iter())
            .find(|m| m.id == self.cluster.node_id)
            .map(|m| m.role);
        if me != Some(want) {
            bail!(
                "--role {name} but cluster.members gives node {} the role {}: write \
                 --member {}=HOST:PORT@{name}",
                self.cluster.node_id,
                me.map_or("none".to_string(), |r| r.to_string()),
                self.cluster.node_id
            );
        }
        self.placement()?;
        let (shards, sequencer) = self.member_sets();
        if shards.is_empty() || sequencer.is_empty() {
            bail!(
                "cluster.members must include shard members and sequencer members (role all, \
                 shard or sequencer); got {} and {}",
                shards.len(),
                sequencer.len()
            );
        }
        Ok(())
    }
}

/// 32 bytes from 64 hex characters.
pub fn parse_hex32(s: &str) -> Result<[u8; 32], NodeError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out)
        .map_err(|e| NodeError::Config(format!("expected 64 hex characters: {e}")))?;
    Ok(out)
}
