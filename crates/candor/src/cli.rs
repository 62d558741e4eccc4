//! Command-line syntax (clap derive).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Overrides;

/// Candor: key transparency for messaging providers.
///
/// Exit codes: 0 ok; 1 usage or configuration error; 2 transport failure or
/// an error status from the server; 3 verification failure.
#[derive(Debug, Parser)]
#[command(name = "candor", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every role (api, shards, sequencer) in one process on the
    /// embedded store: the single-machine quick start.
    Dev(DevArgs),
    /// Run one member of a cluster (`--role all`: API, shard and sequencer replicas).
    Serve(ServeArgs),
    /// Generate a deployment's secret keys into a directory (for `serve --keys-dir`).
    Keygen(KeygenArgs),
    /// Signing-key rotation: `rotate` writes the next head and SMT key version.
    Keys(KeysArgs),
    /// Publish a new value for a label and verify the returned SMT.
    Publish(PublishArgs),
    /// Erase the value of one version of a label (owner only); it is served as
    /// redacted from then on and every proof still verifies.
    Erase(EraseArgs),
    /// Look a label up at a signed epoch and verify the proof.
    Lookup(LookupArgs),
    /// Fetch and verify every version of a label.
    History(HistoryArgs),
    /// Audit epoch transitions: verify every change and the epoch log.
    Audit(AuditArgs),
    /// Verify an SMT or a signed epoch head (from a file or hex).
    Verify(VerifyArgs),
    /// The C2SP checkpoint of an epoch, verified; `--vkey` prints the log's
    /// signed-note key for witnesses; `--witness URL` asks witnesses to cosign it.
    Checkpoint(CheckpointArgs),
    /// Run a third-party auditor: follow a deployment, verify and cosign every
    /// epoch, compare its endpoints, raise alarms with evidence.
    Auditor(crate::auditor_cmd::AuditorArgs),
    /// Write the public audit export (per-epoch audit proofs and checkpoints as
    /// static files) for auditors that do not use the API.
    Export(crate::export_cmd::ExportArgs),
    /// Watch your own labels as their owner: alarm on any version you did not
    /// publish (`publish --monitor-state` records yours).
    Monitor(crate::monitor_cmd::MonitorArgs),
    /// Run a C2SP transparency-log witness (HTTP `add-checkpoint`) for Candor
    /// and other C2SP logs.
    Witness(crate::witness::WitnessArgs),
    /// Load generator: drives a service (or an embedded one) and prints a summary,
    /// optionally writing a JSON report. Every proof is verified.
    #[cfg(feature = "bench")]
    Bench(BenchArgs),
    /// Print the hash of a bearer token, for `api.tenants[].token_hash`.
    HashToken(HashTokenArgs),
    /// Cluster membership: status, add-member, remove-member, move-replica (online).
    Cluster(crate::cluster_cmd::ClusterArgs),
    /// TLS helpers: `gen-dev-certs` (a throw-away CA and node certificates).
    Tls(crate::tls::TlsArgs),
    /// Membership of members run by a Kubernetes StatefulSet: `shrink` (scale down).
    Statefulset(crate::statefulset::StatefulSetCmd),
    /// A stopped member's embedded store: `usage` (bytes per space), `compact`.
    Store(crate::store_cmd::StoreArgs),
}

/// `candor dev`. Settings come from defaults, then `--config FILE` (TOML),
/// then `CANDOR_*` environment variables (`CANDOR_LISTEN`,
/// `CANDOR_DATA_DIR`, `CANDOR_EPOCH_INTERVAL_MS`, nested with `__` as in
/// `CANDOR_API__LIMITS__MAX_VALUE_BYTES`), then these flags.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// TOML configuration file.
    #[arg(long, env = "CANDOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory: keys, dev token, config.bin, store [default: ./candor-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:8700].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Time between epochs, e.g. 1s or 250ms [default: 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub epoch_interval: Option<Duration>,
    /// Number of shards, a power of two [default: 16].
    #[arg(long)]
    pub shards: Option<u32>,
    /// Deployment namespace [default: candor-dev].
    #[arg(long)]
    pub namespace: Option<String>,
    /// Serve /metrics (Prometheus), /healthz and /readyz on this address
    /// (`telemetry.metrics_listen`).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Log line format (`telemetry.log_format`) [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormatArg>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for crate::config::LogFormat {
    fn from(a: LogFormatArg) -> Self {
        match a {
            LogFormatArg::Text => crate::config::LogFormat::Text,
            LogFormatArg::Json => crate::config::LogFormat::Json,
        }
    }
}

impl DevArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            namespace: self.namespace.clone(),
            data_dir: self.data_dir.clone(),
            listen: self.listen,
            epoch_interval_ms: self
                .epoch_interval
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            shards: self.shards,
            store: Default::default(),
            cluster: Default::default(),
            telemetry: crate::config::TelemetryOverrides {
                metrics_listen: self.metrics_listen,
                log_format: self.log_format.map(Into::into),
            },
            api: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Every role in this process: API, a replica of every shard group and of the
    /// sequencer group.
    All,
    /// Only the stateless API: forwards every call to the `--upstream` members.
    Api,
    /// Shared store only: a replica of every shard group, and the API.
    Shard,
    /// Shared store only: a replica of the sequencer group, and the API.
    Sequencer,
}

impl Role {
    /// The member role, `None` for the API role.
    pub fn member_role(self) -> Option<crate::config::MemberRole> {
        use crate::config::MemberRole;
        match self {
            Role::All => Some(MemberRole::All),
            Role::Shard => Some(MemberRole::Shard),
            Role::Sequencer => Some(MemberRole::Sequencer),
            Role::Api => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Shard => "shard",
            Role::Sequencer => "sequencer",
        })
    }
}

/// `candor serve`: one member of a cluster. Settings layer like `candor dev`'s;
/// the `cluster.*` keys (or these flags) say who the members are.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The role to run (`all` co-locates API, shard and sequencer replicas).
    #[arg(long, value_enum, default_value_t = Role::All)]
    pub role: Role,
    #[command(flatten)]
    pub common: DevArgs,
    /// This member's Raft id (> 0).
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Listen address of this member's internal Raft service [default: 127.0.0.1:8701].
    #[arg(long)]
    pub raft_listen: Option<SocketAddr>,
    /// A member as ID=HOST:PORT (its Raft address), or ID=HOST:PORT@ROLE (ROLE: all,
    /// shard or sequencer; the latter two with a shared store), or
    /// ID=HOST:PORT@shard:0-7,12 (a shard member hosting only those shards); repeat for
    /// every member, this one included.
    #[arg(long = "member", value_parser = parse_member)]
    pub members: Vec<crate::config::MemberConfig>,
    /// Initialize a brand-new deployment's groups (on one member only).
    #[arg(long)]
    pub bootstrap: bool,
    /// Directory of the deployment's shared keys (`candor keygen --dir DIR`).
    #[arg(long)]
    pub keys_dir: Option<PathBuf>,
    /// `--role api`: a member's API address (`http://host:port`); repeat for each.
    #[arg(long = "upstream")]
    pub upstreams: Vec<String>,
    /// Where the state lives (`store.backend`): embedded (each member its own copy) or
    /// fdb (FoundationDB, shared; a build with `--features fdb`).
    #[arg(long = "store", value_enum)]
    pub store_backend: Option<StoreArg>,
    /// FoundationDB cluster file (`store.fdb_cluster_file`).
    #[arg(long)]
    pub fdb_cluster_file: Option<PathBuf>,
    /// Accept the bearer token of tenant `dev` from the keys directory
    /// (`api.dev_token`; off by default for `serve`: configure `api.tenants`).
    #[arg(long)]
    pub dev_token: bool,
    /// Serve the public API in clear on a non-loopback address (`api.insecure`):
    /// only behind a TLS-terminating proxy or on a trusted network.
    #[arg(long)]
    pub insecure: bool,
    /// Members run by a StatefulSet: node id from the pod name, --join.
    #[command(flatten)]
    pub statefulset: crate::statefulset::StatefulSetArgs,
}

/// `--store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreArg {
    /// The embedded store under the data directory.
    Embedded,
    /// FoundationDB.
    Fdb,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        let mut o = self.common.overrides();
        o.cluster = crate::config::ClusterOverrides {
            node_id: self.node_id,
            raft_listen: self.raft_listen,
            members: (!self.members.is_empty()).then(|| self.members.clone()),
            bootstrap: self.bootstrap.then_some(true),
            keys_dir: self.keys_dir.clone(),
            upstreams: (!self.upstreams.is_empty()).then(|| self.upstreams.clone()),
        };
        o.store = crate::config::StoreOverrides {
            backend: self.store_backend.map(|b| match b {
                StoreArg::Embedded => crate::config::StoreBackend::Embedded,
                StoreArg::Fdb => crate::config::StoreBackend::Fdb,
            }),
            fdb_cluster_file: self.fdb_cluster_file.clone(),
        };
        o.api = crate::config::ApiOverrides {
            dev_token: self.dev_token.then_some(true),
            insecure: self.insecure.then_some(true),
        };
        o
    }
}

fn parse_member(s: &str) -> Result<crate::config::MemberConfig, String> {
    use crate::config::MemberRole;
    let (id, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=HOST:PORT[@ROLE], got {s:?}"))?;
    let (addr, role, shards) = match rest.rsplit_once('@') {
        None => (rest, MemberRole::All, None),
        Some((a, r)) => {
            // ROLE or ROLE:SHARDS (e.g. shard:0-7,12).
            let (r, shards) = match r.split_once(':') {
                Some((r, sh)) => (r, Some(sh.trim().to_string())),
                None => (r, None),
            };
            let role = match r.trim() {
                "all" => MemberRole::All,
                "shard" => MemberRole::Shard,
                "sequencer" => MemberRole::Sequencer,
                other => {
                    return Err(format!(
                        "member role {other:?} is not one of all, shard, sequencer"
                    ));
                }
            };
            (a, role, shards)
        }
    };
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| format!("member id {id:?} is not a number"))?;
    if id == 0 || addr.trim().is_empty() {
        return Err(format!("expected ID=HOST:PORT with ID > 0, got {s:?}"));
    }
    Ok(crate::config::MemberConfig {
        id,
        raft_addr: addr.trim().to_string(),
        role,
        shards,
    })
}

/// `candor keygen`: the deployment's secret keys, shared by every member.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to create the key files in (mode 0700; files 0600). Refuses to
    /// overwrite existing keys.
    #[arg(long)]
    pub dir: PathBuf,
}

/// `candor keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write the next key version (`head-N.key`, `smt-N.key`) next to the
    /// deployment's keys. The VRF key never changes. A running service switches
    /// to it when restarted (or, in a cluster, once `signing_key_version` says so:
    /// see docs/operations.md, "Rotating the signing keys").
    Rotate(KeysRotateArgs),
}

#[derive(Debug, Args)]
pub struct KeysRotateArgs {
    /// The key directory (`candor keygen --dir`, or `DATA_DIR/keys` of `candor dev`).
    #[arg(
        long,
        conflicts_with = "data_dir",
        required_unless_present = "data_dir"
    )]
    pub dir: Option<PathBuf>,
    /// The data directory of `candor dev` (its keys are in `DATA_DIR/keys`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[cfg(feature = "bench")]
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub options: candor_bench::BenchOptions,
}

#[derive(Debug, Args)]
pub struct HashTokenArgs {
    /// The bearer token.
    pub token: String,
}

/// How client commands reach and pin the service.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Service endpoint.
    #[arg(
        long,
        global = true,
        env = "CANDOR_TARGET",
        default_value = "http://127.0.0.1:8700"
    )]
    pub target: String,
    /// Pin: the configuration digest (64 hex) printed by `candor dev`.
    #[arg(long, global = true, env = "CANDOR_CONFIG_DIGEST")]
    pub config_digest: Option<String>,
    /// Pin: a configuration file (config.bin, as `candor dev` writes it).
    #[arg(long, global = true, env = "CANDOR_PIN")]
    pub pin: Option<PathBuf>,
    /// Without --config-digest or --pin, DATA_DIR/config.bin is the pin
    /// (and DATA_DIR/dev-token the default token).
    #[arg(
        long,
        global = true,
        env = "CANDOR_DATA_DIR",
        default_value = "./candor-data"
    )]
    pub data_dir: PathBuf,
    /// Trust on first use (opt-in): accept whatever configuration the server
    /// serves and print its digest. Only as safe as this one connection.
    #[arg(long, global = true)]
    pub tofu: bool,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Where the last verified head of each deployment is kept between runs
    /// (the freshness rule: an older head served as the latest is refused)
    /// [default: $XDG_STATE_HOME/candor, else ~/.local/state/candor].
    #[arg(long, global = true, env = "CANDOR_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The oldest a head served as the latest may be, e.g. 90s [default: 10
    /// epoch intervals + 60s].
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    pub max_head_age: Option<Duration>,
    #[command(flatten)]
    pub tls: crate::tls::ClientTlsArgs,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Bearer token [default: contents of DATA_DIR/dev-token].
    #[arg(long, env = "CANDOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Idempotency key [default: random]. Retry with the same key to learn
    /// the outcome of an interrupted publish without publishing twice.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Wait until a signed epoch holds the mutation (the SMT's promise).
    #[arg(long)]
    pub wait: bool,
    /// Record the published version in this owner's monitor state (for
    /// `candor monitor`).
    #[arg(long)]
    pub monitor_state: Option<PathBuf>,
    /// The label (UTF-8).
    pub label: String,
    /// The value: a string, or @FILE for a file's bytes.
    pub value: String,
}

#[derive(Debug, Args)]
pub struct EraseArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Bearer token of the label's owner [default: contents of DATA_DIR/dev-token].
    #[arg(long, env = "CANDOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The label (UTF-8).
    pub label: String,
    /// The version whose value to erase.
    pub version: u64,
}

#[derive(Debug, Args)]
pub struct LookupArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Epoch to look up at [default: the latest signed epoch].
    #[arg(long)]
    pub epoch: Option<u64>,
    /// The label (UTF-8).
    pub label: String,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// History up to this epoch [default: the latest signed epoch].
    #[arg(long)]
    pub epoch: Option<u64>,
    /// The label (UTF-8).
    pub label: String,
}

/// Without --from (or with --from 1), a full audit from epoch 1: every
/// transition is verified and the epoch log is recomputed from scratch.
/// With --from E > 1, a window audit: the transitions E..=TO are verified,
/// chained head to head, and the log is checked with consistency proofs.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// First epoch whose transition to verify [default: 1].
    #[arg(long)]
    pub from: Option<u64>,
    /// Last epoch to verify [default: the latest signed epoch].
    #[arg(long)]
    pub to: Option<u64>,
}

/// `candor checkpoint`. Witnesses are given as `--witness URL --witness-vkey
/// VKEY` pairs, in the same order; every cosignature returned is verified with its
/// witness's key before it is printed.
#[derive(Debug, Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The epoch (tree size) [default: the latest].
    #[arg(long)]
    pub size: Option<u64>,
    /// Print the log's signed-note verifier key (what a witness is configured with)
    /// and exit.
    #[arg(long)]
    pub vkey: bool,
    /// A witness's URL prefix (`<prefix>/add-checkpoint`). Repeat.
    #[arg(long = "witness")]
    pub witnesses: Vec<String>,
    /// The cosigner verifier key (type 0x04) of each `--witness`, in order.
    #[arg(long = "witness-vkey")]
    pub witness_vkeys: Vec<String>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub what: VerifyWhat,
}

#[derive(Debug, Subcommand)]
pub enum VerifyWhat {
    /// A Signed Mutation Timestamp (canonical bytes, as `publish --json` prints).
    Smt {
        /// A file (raw or hex) or hex.
        input: String,
        /// Also check the promise online: wait until a signed epoch holds
        /// this label's promised version (or prove the promise broken).
        #[arg(long)]
        label: Option<String>,
    },
    /// Evidence of misbehaviour (as `candor auditor` writes it, or a client
    /// error carries it): two signed heads for one epoch, or a broken SMT promise.
    /// Checked offline against the pinned configuration.
    Evidence {
        /// A file (raw or hex) or hex.
        input: String,
    },
    /// A signed epoch head (canonical bytes).
    Head {
        /// A file (raw or hex) or hex.
        input: String,
        /// Also check online that the server's log holds exactly this head.
        #[arg(long)]
        online: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::parse_member;
    use crate::config::MemberRole;

    #[test]
    fn member_with_and_without_role() {
        let m = parse_member("3=10.0.0.3:8701").unwrap();
        assert_eq!(
            (m.id, m.raft_addr.as_str(), m.role),
            (3, "10.0.0.3:8701", MemberRole::All)
        );
        let m = parse_member("4=[::1]:8701@sequencer").unwrap();
        assert_eq!(
            (m.id, m.raft_addr.as_str(), m.role),
            (4, "[::1]:8701", MemberRole::Sequencer)
        );
        assert_eq!(parse_member("5=h:1@shard").unwrap().role, MemberRole::Shard);
        let m = parse_member("6=h:1@shard:0-7,12").unwrap();
        assert_eq!(
            (m.role, m.shards.as_deref()),
            (MemberRole::Shard, Some("0-7,12"))
        );
        for bad in ["5=h:1@leader", "0=h:1", "x=h:1", "h:1", "5="] {
            assert!(parse_member(bad).is_err(), "{bad}");
        }
    }
}
