//! Command-line options of `candor bench` (a clap [`Args`] struct the binary flattens).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

/// Default endpoint when neither `--target` nor `--embedded` is given (as `candor dev`).
pub const DEFAULT_TARGET: &str = "http://127.0.0.1:8700";

/// Options of one benchmark run.
///
/// Either drives a running service (`--target`, pinned with `--config-digest` or `--pin`,
/// or `--tofu`) or starts an in-process `candor dev` on a temporary directory
/// (`--embedded`). Operations are drawn at random according to `--mix` by `--concurrency`
/// workers until `--duration` has passed or `--ops` operations were issued.
#[derive(Debug, Clone, Args)]
pub struct BenchOptions {
    /// Service endpoint [default: http://127.0.0.1:8700].
    #[arg(long, env = "CANDOR_TARGET")]
    pub target: Option<String>,
    /// Bearer token for publishes [default: the token in ./candor-data/dev-token, as
    /// the client commands].
    #[arg(long, env = "CANDOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Pin: the configuration digest (64 hex) printed by `candor dev`.
    #[arg(long, env = "CANDOR_CONFIG_DIGEST", conflicts_with_all = ["pin", "tofu"])]
    pub config_digest: Option<String>,
    /// Pin: a configuration file (config.bin, as `candor dev` writes it).
    #[arg(long, env = "CANDOR_PIN", conflicts_with = "tofu")]
    pub pin: Option<PathBuf>,
    /// Trust on first use: accept whatever configuration the target serves.
    #[arg(long)]
    pub tofu: bool,
    /// TLS (an `https://` target): the CA bundle that issued the server's certificate.
    #[arg(long, env = "CANDOR_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// With --tls-ca: a client certificate to present.
    #[arg(long, env = "CANDOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// With --tls-cert: its private key.
    #[arg(long, env = "CANDOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Start an in-process `candor dev` (every role, embedded store in a temporary
    /// directory, fresh keys) on 127.0.0.1 and benchmark it.
    #[arg(long)]
    pub embedded: bool,
    /// Epoch interval of the `--embedded` node.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub epoch_interval: Duration,
    /// Shards of the `--embedded` node, a power of two.
    #[arg(long, default_value_t = 16)]
    pub shards: u32,
    /// Share of each operation: `new` labels, `update`s of labels published by this run,
    /// `lookup`s of them. Weights, not necessarily summing to 100; they apply to items
    /// (a PublishBatch of k counts k).
    #[arg(long, default_value = "new=20,update=30,lookup=50")]
    pub mix: Mix,
    /// Operations in flight at once (one task each).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// gRPC connections (each an independent verifying client with its own head
    /// tracker) [default: min(concurrency, 8)].
    #[arg(long)]
    pub connections: Option<usize>,
    /// How long to run, e.g. 30s or 2m [default: 30s unless --ops is given].
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "ops")]
    pub duration: Option<Duration>,
    /// Stop after this many operations (a PublishBatch of k items counts k).
    #[arg(long)]
    pub ops: Option<u64>,
    /// Value size in bytes (random bytes).
    #[arg(long, default_value_t = 32)]
    pub value_size: usize,
    /// Publishes per PublishBatch call (1 = one Publish-sized batch per call).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Labels published (and waited for until merged) before the measured run, so that
    /// updates and lookups have labels to work on [default: 1000 when the mix has
    /// updates or lookups, else 0].
    #[arg(long)]
    pub preload: Option<usize>,
    /// Check the merge of every Nth SMT (1 = all, 0 = none): watch signed heads and
    /// verify by lookup (or history) that the promised leaf is in the map.
    #[arg(long, default_value_t = 10)]
    pub merge_sample: u64,
    /// Attempts per gRPC call (1 = no retry, so every failure is counted).
    #[arg(long, default_value_t = 1)]
    pub attempts: u32,
    /// Verified VRF proofs the load generator remembers (per generation, shared by
    /// its connections), as the SDK does by default; 0 verifies every VRF proof
    /// served, as a client seeing each label for the first time would.
    #[arg(long, default_value_t = 65_536)]
    pub vrf_memo: usize,
    /// Exit non-zero (2) when more than this fraction of operations failed
    /// (0.01 = 1 %); failed verifications always fail the command.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_ratio: f64,
    /// Write the JSON summary to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            target: None,
            token: None,
            config_digest: None,
            pin: None,
            tofu: false,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            embedded: false,
            epoch_interval: Duration::from_secs(1),
            shards: 16,
            mix: Mix::default(),
            concurrency: 64,
            connections: None,
            duration: None,
            ops: None,
            value_size: 32,
            batch: 1,
            preload: None,
            merge_sample: 10,
            attempts: 1,
            vrf_memo: 65_536,
            max_error_ratio: 0.01,
            json: None,
            quiet: false,
        }
    }
}

/// Default run length without `--duration` or `--ops`.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);

/// Most operations one run may issue (keeps counters and label names bounded).
pub const MAX_OPS: u64 = 1 << 40;

impl BenchOptions {
    /// Checks the options make a runnable benchmark.
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 || self.concurrency > 100_000 {
            return Err("--concurrency must be 1..=100000".into());
        }
        if self.connections == Some(0) {
            return Err("--connections must be at least 1".into());
        }
        if self.batch == 0 || self.batch > 100_000 {
            return Err("--batch must be 1..=100000".into());
        }
        if self.value_size > 16 << 20 {
            return Err("--value-size must be at most 16 MiB".into());
        }
        if self.attempts == 0 {
            return Err("--attempts must be at least 1".into());
        }
        if self.mix.total() == 0 {
            return Err("--mix needs a non-zero weight".into());
        }
        if let Some(ops) = self.ops
            && (ops == 0 || ops > MAX_OPS)
        {
            return Err(format!("--ops must be 1..={MAX_OPS}"));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err("--duration must be positive".into());
        }
        if self.embedded {
            if self.target.is_some() || self.config_digest.is_some() || self.pin.is_some() {
                return Err(
                    "--embedded starts its own service: drop --target, --config-digest \
                     and --pin (or CANDOR_TARGET, CANDOR_CONFIG_DIGEST, CANDOR_PIN)"
                        .into(),
                );
            }
            if !self.shards.is_power_of_two() || self.shards > 1 << 16 {
                return Err("--shards must be a power of two ≤ 65536".into());
            }
            if self.epoch_interval.is_zero() {
                return Err("--epoch-interval must be positive".into());
            }
        } else if self.config_digest.is_none() && self.pin.is_none() && !self.tofu {
            return Err(
                "pin the service with --config-digest or --pin (or accept it with --tofu)".into(),
            );
        }
        Ok(())
    }

    /// The endpoint to dial when not embedded.
    pub fn target_or_default(&self) -> &str {
        self.target.as_deref().unwrap_or(DEFAULT_TARGET)
    }

    /// Number of gRPC connections.
    pub fn connection_count(&self) -> usize {
        self.connections.unwrap_or(self.concurrency.min(8)).max(1)
    }

    /// Labels published before the measured run.
    pub fn preload_count(&self) -> usize {
        self.preload
            .unwrap_or(if self.mix.update + self.mix.lookup > 0 {
                1000
            } else {
                0
            })
    }

    /// When the run ends.
    pub fn stop(&self) -> Stop {
        match (self.ops, self.duration) {
            (Some(n), _) => Stop::Ops(n),
            (None, Some(d)) => Stop::Duration(d),
            (None, None) => Stop::Duration(DEFAULT_DURATION),
        }
    }
}

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// After this long.
    Duration(#[serde(with = "duration_secs")] Duration),
    /// After this many operations.
    Ops(u64),
}

mod duration_secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Operation weights: `new=20,update=30,lookup=50`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mix {
    /// Publishes of labels never published before.
    pub new: u32,
    /// Publishes of labels this run published before.
    pub update: u32,
    /// Verified lookups of labels this run published (absent ones too, before merge).
    pub lookup: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            new: 20,
            update: 30,
            lookup: 50,
        }
    }
}

/// What one operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Publish a new label.
    New,
    /// Publish a new version of a label.
    Update,
    /// Look a label up.
    Lookup,
}

impl Mix {
    /// Sum of the weights.
    pub fn total(&self) -> u64 {
        u64::from(self.new) + u64::from(self.update) + u64::from(self.lookup)
    }

    /// The operation for a uniform draw `r` in `0..total()`.
    pub fn pick(&self, r: u64) -> OpKind {
        let r = r % self.total().max(1);
        if r < u64::from(self.new) {
            OpKind::New
        } else if r < u64::from(self.new) + u64::from(self.update) {
            OpKind::Update
        } else {
            OpKind::Lookup
        }
    }

    /// The operation for a uniform draw `r` when writes go `batch` items per call:
    /// lookups are weighted `batch` times so that the *items* (a call of `batch`
    /// publishes counts `batch` operations) follow the weights. Returns `Lookup` or, for
    /// any write, `New` (the items are then drawn with [`Mix::pick_write`]).
    pub fn pick_call(&self, r: u64, batch: usize) -> OpKind {
        let writes = u64::from(self.new) + u64::from(self.update);
        let lookups = u64::from(self.lookup).saturating_mul(batch.max(1) as u64);
        let total = writes.saturating_add(lookups).max(1);
        if r % total < lookups {
            OpKind::Lookup
        } else {
            OpKind::New
        }
    }

    /// For a write, whether a draw `r` makes it a new label (else an update).
    pub fn pick_write(&self, r: u64) -> OpKind {
        let w = u64::from(self.new) + u64::from(self.update);
        if w == 0 || r % w < u64::from(self.new) {
            OpKind::New
        } else {
            OpKind::Update
        }
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut mix = Mix {
            new: 0,
            update: 0,
            lookup: 0,
        };
        let mut seen = [false; 3];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected NAME=WEIGHT"))?;
            let v: u32 = v
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: weight must be a non-negative integer"))?;
            if v > 1_000_000 {
                return Err(format!("{part:?}: weight must be at most 1000000"));
            }
            let i = match k.trim() {
                "new" => 0,
                "update" => 1,
                "lookup" => 2,
                other => {
                    return Err(format!(
                        "unknown operation {other:?} (expected new, update, lookup)"
                    ));
                }
            };
            if seen[i] {
                return Err(format!("{k:?} given twice"));
            }
            seen[i] = true;
            match i {
                0 => mix.new = v,
                1 => mix.update = v,
                _ => mix.lookup = v,
            }
        }
        if mix.total() == 0 {
            return Err("the mix needs at least one non-zero weight".into());
        }
        Ok(mix)
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "new={},update={},lookup={}",
            self.new, self.update, self.lookup
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchOptions,
    }

    #[test]
    fn mix_parses_and_rejects() {
        let m: Mix = "new=20,update=30,lookup=50".parse().unwrap();
        assert_eq!((m.new, m.update, m.lookup), (20, 30, 50));
        let m: Mix = "lookup=1".parse().unwrap();
        assert_eq!((m.new, m.update, m.lookup), (0, 0, 1));
        assert_eq!(m.to_string(), "new=0,update=0,lookup=1");
        for bad in [
            "",
            "new=0",
            "new",
            "new=x",
            "new=-1",
            "foo=1",
            "new=1,new=2",
            "new=2000000",
        ] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn mix_picks_in_proportion() {
        let m: Mix = "new=1,update=2,lookup=7".parse().unwrap();
        let mut counts = [0u32; 3];
        for r in 0..m.total() * 100 {
            counts[m.pick(r) as usize] += 1;
        }
        assert_eq!(counts, [100, 200, 700]);
        assert_eq!(m.pick_write(0), OpKind::New);
        assert_eq!(m.pick_write(1), OpKind::Update);
        assert_eq!(m.pick_write(2), OpKind::Update);
        let lookups_only: Mix = "lookup=1".parse().unwrap();
        assert_eq!(lookups_only.pick_write(5), OpKind::New);
    }

    #[test]
    fn calls_follow_the_mix_in_items() {
        // Half the items lookups, half publishes, with publishes 10 per call.
        let m: Mix = "new=25,update=25,lookup=50".parse().unwrap();
        let (mut lookup_items, mut write_items) = (0u64, 0u64);
        let total = 50 + 50 * 10;
        for r in 0..total * 20 {
            match m.pick_call(r, 10) {
                OpKind::Lookup => lookup_items += 1,
                _ => write_items += 10,
            }
        }
        assert_eq!(lookup_items, write_items);
        assert_eq!(m.pick_call(0, 1), OpKind::Lookup);
        let writes_only: Mix = "new=1".parse().unwrap();
        assert!((0..100).all(|r| writes_only.pick_call(r, 10) == OpKind::New));
    }

    #[test]
    fn options_parse_through_clap() {
        let c = Cli::try_parse_from([
            "x",
            "--embedded",
            "--mix",
            "new=1,lookup=1",
            "--duration",
            "2m",
            "--batch",
            "50",
            "--json",
            "out.json",
        ])
        .unwrap();
        let o = c.bench;
        assert!(o.embedded);
        assert_eq!(o.stop(), Stop::Duration(Duration::from_secs(120)));
        assert_eq!(o.batch, 50);
        assert_eq!(o.json.as_deref(), Some(std::path::Path::new("out.json")));
        o.validate().unwrap();
        // --ops and --duration exclude each other; --embedded excludes --target.
        assert!(Cli::try_parse_from(["x", "--ops", "5", "--duration", "1s"]).is_err());
        let c = Cli::try_parse_from(["x", "--embedded", "--target", "http://h:1"]).unwrap();
        assert!(c.bench.validate().is_err());
    }

    #[test]
    fn validation() {
        let mut o = BenchOptions::default();
        assert!(o.validate().is_err(), "a remote target must be pinned");
        o.tofu = true;
        o.validate().unwrap();
        assert_eq!(o.stop(), Stop::Duration(DEFAULT_DURATION));
        assert_eq!(o.connection_count(), 8);
        assert_eq!(o.preload_count(), 1000);
        o.ops = Some(10);
        assert_eq!(o.stop(), Stop::Ops(10));
        o.batch = 0;
        assert!(o.validate().is_err());
        o.batch = 1;
        o.concurrency = 0;
        assert!(o.validate().is_err());
        let o = BenchOptions {
            embedded: true,
            shards: 3,
            ..BenchOptions::default()
        };
        assert!(o.validate().is_err());
        let o = BenchOptions {
            mix: "new=1".parse().unwrap(),
            tofu: true,
            ..BenchOptions::default()
        };
        assert_eq!(o.preload_count(), 0);
    }
}
