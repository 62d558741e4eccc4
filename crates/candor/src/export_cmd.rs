//! `candor export`: the public audit export, static files an auditor can check
//! without the gRPC API (served from an object store or a CDN).
//!
//! Layout under `--out` (protobuf encodings of `proto/candor/v1/candor.proto`;
//! `<N>` in the tlog-tiles path form: `N` as 3-digit groups, every group but the
//! last prefixed with `x`, e.g. epoch 1234067 is `x001/x234/067`):
//!
//! * `config`: `GetConfigResponse` (the configuration chain; rewritten when the
//!   deployment rotates its keys);
//! * `audit/<N>`: `AuditResponse` of epoch `N` (its signed head, the previous
//!   head and the transition proof), immutable;
//! * `checkpoints/<N>`: the C2SP signed checkpoint of epoch `N`, immutable;
//! * `checkpoint`: the latest checkpoint (rewritten).
//!
//! Files are written to a temporary name, synced and renamed, so a reader sees
//! a whole file or none. The exporter is not trusted: `candor auditor --from-dir`
//! / `--from-url` verifies everything against the pinned configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use prost::Message;

use crate::cli::ConnectArgs;
use crate::cmds::{Failure, connect_to};

/// `candor export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The directory to write to.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep exporting new epochs until stopped.
    #[arg(long)]
    pub follow: bool,
    /// With `--follow`, how often to look for new epochs.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll: Duration,
}

/// The tlog-tiles path form of `n`.
pub fn tile_path(n: u64) -> String {
    let s = n.to_string();
    let pad = s.len().div_ceil(3) * 3;
    let s = format!("{s:0>pad$}");
    let groups: Vec<&str> = (0..s.len()).step_by(3).map(|i| &s[i..i + 3]).collect();
    let (last, rest) = groups.split_last().expect("at least one group");
    let mut out: Vec<String> = rest.iter().map(|g| format!("x{g}")).collect();
    out.push((*last).to_string());
    out.join("/")
}

fn write_file(root: &Path, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = root.join(rel);
    let dir = path.parent().unwrap_or(root);
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file")
        .to_string();
    crate::witness::write_atomically(dir, &name, bytes)
}

/// Runs the export (see the module docs).
pub async fn run(a: ExportArgs) -> Result<(), Failure> {
    let io = |what: &str, e: std::io::Error| {
        Failure::usage(anyhow::anyhow!("{what} under {}: {e}", a.out.display()))
    };
    let client = connect_to(&a.connect, &a.connect.target).await?;
    let mut configs: Option<usize> = None;
    let mut next = 1u64;
    // Resume after the last exported epoch.
    while a.out.join("audit").join(tile_path(next)).exists() {
        next += 1;
    }
    loop {
        let config = client.config_response().await?;
        if configs != Some(config.history.len()) {
            write_file(&a.out, "config", &config.encode_to_vec()).map_err(|e| io("config", e))?;
            configs = Some(config.history.len());
        }
        let latest = client.latest_head().await?.head.epoch;
        let first = next;
        while next <= latest {
            let resp = client.audit_response(next).await?;
            write_file(
                &a.out,
                &format!("audit/{}", tile_path(next)),
                &resp.encode_to_vec(),
            )
            .map_err(|e| io("audit", e))?;
            match client.checkpoint(next, None).await {
                Ok(cp) => write_file(
                    &a.out,
                    &format!("checkpoints/{}", tile_path(next)),
                    cp.note.as_bytes(),
                )
                .map_err(|e| io("checkpoint", e))?,
                // Epochs signed before checkpoints existed have none.
                Err(candor_client::ClientError::Status(s)) if s.code() == tonic::Code::NotFound => {
                }
                Err(e) => return Err(e.into()),
            }
            next += 1;
        }
        if next > first
            && let Ok(cp) = client.checkpoint(next - 1, None).await
        {
            write_file(&a.out, "checkpoint", cp.note.as_bytes())
                .map_err(|e| io("checkpoint", e))?;
        }
        if !a.follow {
            println!("exported epochs 1..={} to {}", next - 1, a.out.display());
            return Ok(());
        }
        tokio::select! {
            _ = crate::dev::shutdown_signal() => return Ok(()),
            _ = tokio::time::sleep(a.poll) => {}
        }
    }
}

/// Where an offline auditor reads an export from.
pub enum ExportSource {
    Dir(PathBuf),
    Url(String, reqwest::Client),
}

impl ExportSource {
    /// The file at `rel`, `None` if it does not exist (yet).
    pub async fn get(&self, rel: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            ExportSource::Dir(d) => match std::fs::read(d.join(rel)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            },
            ExportSource::Url(base, http) => {
                let url = format!("{}/{rel}", base.trim_end_matches('/'));
                let r = http.get(&url).send().await?;
                if r.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                if !r.status().is_success() {
                    anyhow::bail!("GET {url}: {}", r.status());
                }
                Ok(Some(r.bytes().await?.to_vec()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tile_path;

    #[test]
    fn tile_paths_follow_tlog_tiles() {
        assert_eq!(tile_path(0), "000");
        assert_eq!(tile_path(7), "007");
        assert_eq!(tile_path(999), "999");
        assert_eq!(tile_path(1000), "x001/000");
        assert_eq!(tile_path(1_234_067), "x001/x234/067");
    }
}
