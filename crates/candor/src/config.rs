//! Server configuration: one serde struct tree, layered (lowest first)
//! defaults → TOML file (`--config`) → `CANDOR_*` environment variables
//! (nested keys joined with `__`, e.g. `CANDOR_API__LIMITS__MAX_VALUE_BYTES`)
//! → command-line flags; validated once at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use candor_api::Limits;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Top-level keys; the environment provider only reads these, so unrelated
/// `CANDOR_*` variables of the client commands (CANDOR_TARGET, CANDOR_TOKEN,
/// ...) never reach the strict server configuration.
const TOP_LEVEL_KEYS: &[&str] = &[
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
    pub api: ApiConfig,
    pub store: StoreConfig,
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `telemetry.otlp_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// `[tls]`: certificate files (PEM) and where TLS is on. The files are loaded and
/// checked at start-up ([`crate::tls`]); see docs/operations.md, "TLS and mutual TLS".
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
    pub api_key: Option<PathBuf>,
    /// When set, API clients must present a certificate issued by this CA bundle.
    pub api_client_ca: Option<PathBuf>,
    /// `--role api`: CA bundle to check the members' API certificates (default `ca`).
    pub upstream_ca: Option<PathBuf>,
}

impl TlsSettings {
    /// Checks which keys are needed, naming them (the files are read by [`crate::tls`]).
    pub fn validate(&self) -> anyhow::Result<()> {
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
    pub fn validate(&self) -> anyhow::Result<()> {
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
    /// Cached VRF evaluations (entries).
    pub vrf_cache_entries: usize,
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
            vrf_cache_entries: 65_536,
            view_cache_epochs: 8,
        }
    }
}

/// One tenant allowed to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
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
    /// Block cache of the embedded store, bytes.
    pub cache_bytes: u64,
    /// Memtable size, bytes.
    pub memtable_bytes: u64,
    /// Tree node cache, bytes.
    pub tree_cache_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Embedded,
            fdb_cluster_file: None,
            cache_bytes: 64 << 20,
            memtable_bytes: 16 << 20,
            tree_cache_bytes: 64 << 20,
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

/// Command-line overrides (only the flags actually given).
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch_interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    #[serde(skip_serializing_if = "StoreOverrides::is_empty")]
    pub store: StoreOverrides,
    #[serde(skip_serializing_if = "ClusterOverrides::is_empty")]
    pub cluster: ClusterOverrides,
    #[serde(skip_serializing_if = "TelemetryOverrides::is_empty")]
    pub telemetry: TelemetryOverrides,
    #[serde(skip_serializing_if = "ApiOverrides::is_empty")]
    pub api: ApiOverrides,
}

/// `candor serve --dev-token` and `--insecure`.
#[derive(Debug, Default, Serialize)]
pub struct ApiOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev_token: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
}

impl ApiOverrides {
    fn is_empty(&self) -> bool {
        self.dev_token.is_none() && self.insecure.is_none()
    }
}

/// `--metrics-listen` and `--log-format`.
#[derive(Debug, Default, Serialize)]
pub struct TelemetryOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

impl TelemetryOverrides {
    fn is_empty(&self) -> bool {
        self.metrics_listen.is_none() && self.log_format.is_none()
    }
}

/// `candor serve` flags that override `store.*`.
#[derive(Debug, Default, Serialize)]
pub struct StoreOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<StoreBackend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fdb_cluster_file: Option<PathBuf>,
}

impl StoreOverrides {
    fn is_empty(&self) -> bool {
        self.backend.is_none() && self.fdb_cluster_file.is_none()
    }
}

/// `candor serve` flags that override `cluster.*`.
#[derive(Debug, Default, Serialize)]
pub struct ClusterOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberConfig>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<Vec<String>>,
}

impl ClusterOverrides {
    fn is_empty(&self) -> bool {
        self.node_id.is_none()
            && self.raft_listen.is_none()
            && self.members.is_none()
            && self.bootstrap.is_none()
            && self.keys_dir.is_none()
            && self.upstreams.is_none()
    }
}

impl Config {
    /// Layers defaults, the TOML file, the environment and `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                bail!("configuration file {} does not exist", path.display());
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        let env = Env::prefixed("CANDOR_").split("__").filter(|k| {
            let key = k.as_str();
            let top = key.split(['.']).next().unwrap_or_default();
            let top = top.split("__").next().unwrap_or_default();
            TOP_LEVEL_KEYS.iter().any(|t| t.eq_ignore_ascii_case(top))
        });
        let config: Config = fig
            .merge(env)
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| anyhow::anyhow!(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// `candor serve`: the public API in clear on a non-loopback address needs
    /// `api.insecure` (`--insecure`); `tls.api` is the production answer.
    pub fn check_plaintext_api(&self) -> anyhow::Result<()> {
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

    /// `log2(shards)`.
    pub fn shard_bits(&self) -> u8 {
        self.shards.trailing_zeros() as u8
    }

    /// Checks every value, with messages that name the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        candor_core::signed::validate_namespace(&self.namespace)
            .map_err(|e| anyhow::anyhow!("namespace: {e}"))?;
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
            .map_err(|e| anyhow::anyhow!("api.limits: {e}"))?;
        for (i, t) in self.api.tenants.iter().enumerate() {
            if t.name.is_empty() {
                bail!("api.tenants[{i}].name must not be empty");
            }
            parse_hex32(&t.token_hash).with_context(|| {
                format!("api.tenants[{i}].token_hash (use `candor hash-token TOKEN`)")
            })?;
        }
        for (i, k) in self.api.auditor_keys.iter().enumerate() {
            parse_hex32(k).with_context(|| format!("api.auditor_keys[{i}]"))?;
        }
        if self.api.vrf_cache_entries == 0 || self.api.view_cache_epochs == 0 {
            bail!("api.vrf_cache_entries and api.view_cache_epochs must be at least 1");
        }
        self.tls.validate()?;
        Ok(())
    }
}

/// 32 bytes from 64 hex characters.
pub fn parse_hex32(s: &str) -> anyhow::Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out)
        .map_err(|e| anyhow::anyhow!("expected 64 hex characters: {e}"))?;
    Ok(out)
}

fn describe(e: figment::Error) -> String {
    let mut lines = vec!["invalid configuration:".to_string()];
    for err in e {
        lines.push(format!("  {err}"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn layering_and_validation() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "candor.toml",
                "shards = 4\nepoch_interval_ms = 500\n[api.limits]\nmax_value_bytes = 100\n",
            )?;
            jail.set_env("CANDOR_EPOCH_INTERVAL_MS", "700");
            jail.set_env("CANDOR_API__LIMITS__MAX_BATCH_ITEMS", "10");
            jail.set_env("CANDOR_TOKEN", "ignored by the server config");
            let c = Config::load(Some(Path::new("candor.toml")), &Overrides::default()).unwrap();
            assert_eq!((c.shards, c.epoch_interval_ms), (4, 700));
            assert_eq!(
                (c.api.limits.max_value_bytes, c.api.limits.max_batch_items),
                (100, 10)
            );
            let o = Overrides {
                epoch_interval_ms: Some(900),
                ..Overrides::default()
            };
            let c = Config::load(Some(Path::new("candor.toml")), &o).unwrap();
            assert_eq!(c.epoch_interval_ms, 900);

            jail.set_env("CANDOR_SHARDS", "3");
            let e = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("power of two"), "{e}");
            jail.set_env("CANDOR_SHARDS", "many");
            let e = Config::load(None, &Overrides::default()).unwrap_err();
            assert!(e.to_string().to_lowercase().contains("shards"), "{e}");
            jail.set_env("CANDOR_SHARDS", "16");
            jail.create_file("typo.toml", "shardz = 4\n")?;
            let e = Config::load(Some(Path::new("typo.toml")), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("shardz"), "{e}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn tls_table_from_file_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("tls.toml", "[tls]\ncert = \"n.crt\"\nkey = \"n.key\"\n")?;
            jail.set_env("CANDOR_TLS__CA", "ca.crt");
            jail.set_env("CANDOR_TLS__CLUSTER", "true");
            jail.set_env("CANDOR_TLS_CA", "client flag env, not the server's");
            let c = Config::load(Some(Path::new("tls.toml")), &Overrides::default()).unwrap();
            assert_eq!(c.tls.cert.as_deref(), Some(Path::new("n.crt")));
            assert_eq!(c.tls.ca.as_deref(), Some(Path::new("ca.crt")));
            assert!(c.tls.cluster && !c.tls.api);
            jail.create_file("half.toml", "[tls]\ncert = \"n.crt\"\n")?;
            let e = Config::load(Some(Path::new("half.toml")), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("tls.key"), "{e}");
            jail.set_env("CANDOR_TLS__API", "true");
            jail.create_file("none.toml", "")?;
            let e = Config::load(Some(Path::new("none.toml")), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("tls.cluster = true needs"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn example_file_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("candor.example.toml");
        let from_file: Config = Figment::from(Toml::file_exact(&path)).extract().unwrap();
        assert_eq!(from_file, Config::default());
    }
}
