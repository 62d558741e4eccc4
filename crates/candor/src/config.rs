//! Server configuration: one serde struct tree, layered (lowest first)
//! defaults → TOML file (`--config`) → `CANDOR_*` environment variables
//! (nested keys joined with `__`, e.g. `CANDOR_API__LIMITS__MAX_VALUE_BYTES`)
//! → command-line flags; validated once at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::bail;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;

pub use candor_node::config::*;

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

/// Layers defaults, the TOML file, the environment and `overrides`, then checks the
/// result ([`Config::validate`]).
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
            let c = load(Some(Path::new("candor.toml")), &Overrides::default()).unwrap();
            assert_eq!((c.shards, c.epoch_interval_ms), (4, 700));
            assert_eq!(
                (c.api.limits.max_value_bytes, c.api.limits.max_batch_items),
                (100, 10)
            );
            let o = Overrides {
                epoch_interval_ms: Some(900),
                ..Overrides::default()
            };
            let c = load(Some(Path::new("candor.toml")), &o).unwrap();
            assert_eq!(c.epoch_interval_ms, 900);

            jail.set_env("CANDOR_SHARDS", "3");
            let e = load(None, &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("power of two"), "{e}");
            jail.set_env("CANDOR_SHARDS", "many");
            let e = load(None, &Overrides::default()).unwrap_err();
            assert!(e.to_string().to_lowercase().contains("shards"), "{e}");
            jail.set_env("CANDOR_SHARDS", "16");
            jail.create_file("typo.toml", "shardz = 4\n")?;
            let e = load(Some(Path::new("typo.toml")), &Overrides::default()).unwrap_err();
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
            let c = load(Some(Path::new("tls.toml")), &Overrides::default()).unwrap();
            assert_eq!(c.tls.cert.as_deref(), Some(Path::new("n.crt")));
            assert_eq!(c.tls.ca.as_deref(), Some(Path::new("ca.crt")));
            assert!(c.tls.cluster && !c.tls.api);
            jail.create_file("half.toml", "[tls]\ncert = \"n.crt\"\n")?;
            let e = load(Some(Path::new("half.toml")), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("tls.key"), "{e}");
            jail.set_env("CANDOR_TLS__API", "true");
            jail.create_file("none.toml", "")?;
            let e = load(Some(Path::new("none.toml")), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains("tls.cluster = true needs"), "{e}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API
    fn one_memory_budget_sizes_the_caches() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("mem.toml", "[store]\ntree_cache_bytes = 100000000\n")?;
            jail.set_env("CANDOR_MEMORY__BUDGET_BYTES", "1073741824");
            let c = load(Some(Path::new("mem.toml")), &Overrides::default()).unwrap();
            let plan = c.memory_plan().unwrap();
            let default = Config::default().memory_plan().unwrap();
            assert_eq!(plan.tree_cache_bytes, 100_000_000);
            assert!(plan.block_cache_bytes > default.block_cache_bytes);
            jail.set_env("CANDOR_MEMORY__BUDGET_BYTES", "134217728");
            let c = load(Some(Path::new("mem.toml")), &Overrides::default()).unwrap();
            let e = c.memory_plan().unwrap_err();
            assert!(e.to_string().contains("memory.budget_bytes"), "{e}");
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
