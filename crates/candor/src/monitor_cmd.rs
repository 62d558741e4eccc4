//! `candor monitor`: an account owner watches its own labels.
//!
//! Lookups prove everyone sees the same keys; only the owner knows which
//! versions it published. `candor publish --monitor-state FILE` records each
//! version it publishes there; `candor monitor --monitor-state FILE` checks the
//! labels' verified histories every epoch and raises an alarm for any version the
//! owner did not publish, a rewritten version or a shortened history
//! (`candor_client::monitor`). The state file (expectations, what was seen,
//! alarms already raised) is replaced atomically after every check.

use std::path::{Path, PathBuf};
use std::time::Duration;

use candor_client::monitor::{Monitor, MonitorEvent, MonitorState};
use clap::Args;
use serde_json::json;

use crate::cli::ConnectArgs;
use crate::cmds::{Failure, connect_to};

/// `candor monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The owner's monitor state (what `candor publish --monitor-state` recorded).
    #[arg(long)]
    pub monitor_state: PathBuf,
    /// Also watch this label; any version of it not recorded as published by the
    /// owner is an alarm. Repeat.
    #[arg(long = "watch")]
    pub watch: Vec<String>,
    /// With `--watch`: accept the label's current versions as the owner's (trust
    /// on first use), alarm only on later ones.
    #[arg(long)]
    pub trust_current: bool,
    /// Check once and exit (exit code 3 if an alarm was raised).
    #[arg(long)]
    pub once: bool,
    /// Exit with code 3 at the first alarm.
    #[arg(long)]
    pub fail_fast: bool,
    /// POSTs each alarm as JSON to this URL.
    #[arg(long)]
    pub webhook: Option<String>,
    /// How often to check.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll: Duration,
}

/// Loads the state file (a missing file is an empty state).
pub(crate) fn load_state(path: &Path) -> Result<MonitorState, Failure> {
    match std::fs::read(path) {
        Ok(b) => MonitorState::from_bytes(&b).map_err(|e| {
            Failure::usage(anyhow::anyhow!(
                "{} is not a monitor state: {e}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MonitorState::new()),
        Err(e) => Err(Failure::usage(anyhow::anyhow!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Replaces the state file atomically.
pub(crate) fn save_state(path: &Path, state: &MonitorState) -> Result<(), Failure> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Failure::usage(anyhow::anyhow!("{}: not a file name", path.display())))?;
    std::fs::create_dir_all(dir)
        .and_then(|()| crate::witness::write_atomically(dir, name, &state.to_bytes()))
        .map_err(|e| Failure::usage(anyhow::anyhow!("cannot write {}: {e}", path.display())))
}

/// Runs the monitor (see the module docs).
pub async fn run(a: MonitorArgs) -> Result<(), Failure> {
    let client = connect_to(&a.connect, &a.connect.target).await?;
    let mut state = load_state(&a.monitor_state)?;
    for label in &a.watch {
        let known: Vec<(u64, candor_core::Digest)> = if a.trust_current {
            client
                .history(label.as_bytes())
                .await?
                .history
                .versions
                .iter()
                .map(|v| (v.version, v.leaf_hash))
                .collect()
        } else {
            Vec::new()
        };
        state.watch(label.as_bytes(), known);
    }
    if state.labels().next().is_none() {
        return Err(Failure::usage(anyhow::anyhow!(
            "nothing to watch: publish with --monitor-state {} or pass --watch LABEL",
            a.monitor_state.display()
        )));
    }
    save_state(&a.monitor_state, &state)?;
    let http = reqwest::Client::new();
    let mut monitor = Monitor::new(client, state);
    let mut alarmed = false;
    loop {
        match monitor.poll().await {
            Ok(events) => {
                save_state(&a.monitor_state, monitor.state())?;
                for e in events {
                    if !e.is_alarm() {
                        tracing::info!(event = ?e, "confirmed");
                        continue;
                    }
                    alarmed = true;
                    let (label, detail) = describe(&e);
                    tracing::error!(label = %label, "MONITOR ALARM: {detail}");
                    println!("ALARM {label}: {detail}");
                    if let Some(url) = &a.webhook {
                        let body = json!({ "alarm": "monitor", "label": label, "detail": detail });
                        if let Err(err) = http.post(url).json(&body).send().await {
                            tracing::error!(error = %err, "alarm webhook failed");
                        }
                    }
                    if a.fail_fast {
                        return Err(Failure::verification(format!("{label}: {detail}")));
                    }
                }
                if a.once {
                    return if alarmed {
                        Err(Failure::verification(
                            "a watched label changed in a way its owner did not publish",
                        ))
                    } else {
                        println!(
                            "checked at epoch {}: every version of every watched label is the owner's",
                            monitor.last_epoch()
                        );
                        Ok(())
                    };
                }
            }
            // A verification failure is itself an alarm (the service misbehaved).
            Err(e) if e.is_security_event() => return Err(Failure::from(e)),
            Err(e) => tracing::warn!(error = %e, "check failed; retrying"),
        }
        tokio::select! {
            _ = crate::dev::shutdown_signal() => return Ok(()),
            _ = tokio::time::sleep(a.poll) => {}
        }
    }
}

fn describe(e: &MonitorEvent) -> (String, String) {
    let l = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match e {
        MonitorEvent::UnexpectedChange {
            label,
            version,
            leaf_hash,
            epoch,
        } => (
            l(label),
            format!(
                "version {version} (leaf {}) in epoch {epoch} was not published by the owner",
                hex::encode(leaf_hash)
            ),
        ),
        MonitorEvent::HistoryRewritten {
            label,
            version,
            epoch,
            ..
        } => (
            l(label),
            format!("version {version} changed its leaf by epoch {epoch}: history rewritten"),
        ),
        MonitorEvent::Rollback {
            label,
            previously,
            now,
            epoch,
        } => (
            l(label),
            format!("the history shrank from {previously} to {now} versions at epoch {epoch}"),
        ),
        MonitorEvent::Confirmed {
            label,
            version,
            epoch,
        } => (
            l(label),
            format!("version {version} confirmed at epoch {epoch}"),
        ),
    }
}
