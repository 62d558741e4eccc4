//! `candor witness`: a C2SP transparency-log witness over HTTP
//! (c2sp.org/tlog-witness `add-checkpoint`), for Candor's checkpoints
//! (docs/protocol.md §11) and any other C2SP log; and the log side,
//! `candor checkpoint --witness URL`, which asks witnesses to cosign a Candor
//! checkpoint.
//!
//! The witness's memory (the latest cosigned size and root per log) is a file in
//! `--state-dir`, replaced atomically (write, fsync, rename, fsync the directory)
//! *before* a cosignature is returned; one lock covers check and update, so two
//! concurrent requests cannot roll the recorded size back.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use candor_client::witness::{
    AddCheckpoint, AddCheckpointError, Witness, WitnessState, WitnessedLog,
};
use candor_core::signed::SigningKeyPair;
use clap::Args;
use tokio::sync::Mutex;

/// `candor witness`.
#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// The witness's name (a note key name, e.g. `witness.example.com/w1`): it
    /// appears on every cosignature line.
    #[arg(long)]
    pub name: String,
    /// The witness's Ed25519 key: a file with the 32-byte seed in hex. Created
    /// (mode 0600) if missing.
    #[arg(long)]
    pub key_file: PathBuf,
    /// Where the latest cosigned checkpoint of each log is kept.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// A log to witness, as its signed-note verifier key
    /// `origin+keyid+base64(0x01||key)` (for Candor: `candor checkpoint --vkey`).
    /// Repeat for several logs.
    #[arg(long = "log", required = true)]
    pub logs: Vec<String>,
    /// HTTP listen address (`POST /add-checkpoint`).
    #[arg(long, default_value = "127.0.0.1:7380")]
    pub listen: SocketAddr,
}

const STATE_FILE: &str = "witness-state";

/// A witness ready to serve: its identity, logs and remembered state.
pub(crate) struct Shared {
    witness: Witness,
    state_dir: PathBuf,
    state: Mutex<WitnessState>,
}

impl Shared {
    /// Builds the witness and loads its state from `state_dir`.
    pub(crate) fn open(
        name: &str,
        key: SigningKeyPair,
        logs: &[String],
        state_dir: &Path,
    ) -> anyhow::Result<Arc<Shared>> {
        let logs = logs
            .iter()
            .map(|v| WitnessedLog::from_vkey(v).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()
            .context("--log")?;
        let witness = Witness::new(name.to_string(), key, logs).map_err(anyhow::Error::msg)?;
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("cannot create {}", state_dir.display()))?;
        let path = state_dir.join(STATE_FILE);
        let state = match std::fs::read_to_string(&path) {
            Ok(text) => WitnessState::decode(&text)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{} is corrupt", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => WitnessState::default(),
            Err(e) => return Err(e).context("reading the witness state"),
        };
        Ok(Arc::new(Shared {
            witness,
            state_dir: state_dir.to_path_buf(),
            state: Mutex::new(state),
        }))
    }

    /// The cosigner verifier key.
    pub(crate) fn vkey(&self) -> String {
        self.witness.vkey()
    }
}

/// `POST /add-checkpoint`.
pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/add-checkpoint", axum::routing::post(add_checkpoint))
        .with_state(shared)
}

/// Runs the witness until SIGINT / SIGTERM.
pub async fn run(args: WitnessArgs) -> anyhow::Result<()> {
    let key = load_or_create_key(&args.key_file)?;
    let shared = Shared::open(&args.name, key, &args.logs, &args.state_dir)?;
    let vkey = shared.vkey();
    let app = router(shared);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "candor witness {} serving http://{addr}/add-checkpoint\n  cosigner vkey: {vkey}",
        args.name
    );
    tracing::info!(listen = %addr, name = %args.name, logs = args.logs.len(), "witness serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::dev::shutdown_signal())
        .await
        .context("witness HTTP server")?;
    Ok(())
}

async fn add_checkpoint(State(s): State<Arc<Shared>>, body: String) -> Response {
    let req = match AddCheckpoint::parse(&body) {
        Ok(r) => r,
        Err(e) => return refuse(&e),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // One lock over check, persist and update (the spec's atomicity rule).
    let mut state = s.state.lock().await;
    let (line, next) = match s.witness.add_checkpoint(&state, &req, now) {
        Ok(x) => x,
        Err(e) => return refuse(&e),
    };
    let dir = s.state_dir.clone();
    let text = next.encode();
    match tokio::task::spawn_blocking(move || write_atomically(&dir, STATE_FILE, text.as_bytes()))
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot persist the witness state: not cosigning");
            return (StatusCode::SERVICE_UNAVAILABLE, "cannot persist state\n").into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "witness state task failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
        }
    }
    *state = next;
    tracing::info!(cosigned = %line.trim_end(), "checkpoint cosigned");
    (StatusCode::OK, line).into_response()
}

fn refuse(e: &AddCheckpointError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    tracing::warn!(status = status.as_u16(), error = %e, "add-checkpoint refused");
    match e {
        AddCheckpointError::OldSizeMismatch { latest } => (
            status,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{latest}\n"),
        )
            .into_response(),
        _ => (status, format!("{e}\n")).into_response(),
    }
}

/// Replaces `dir/name` with `bytes` crash-safely.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

pub(crate) fn load_or_create_key(path: &Path) -> anyhow::Result<SigningKeyPair> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let seed: [u8; 32] = hex::decode(text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .with_context(|| format!("{}: not 64 hex digits", path.display()))?;
            Ok(SigningKeyPair::from_seed(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKeyPair::generate();
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            std::io::Write::write_all(&mut f, hex::encode(*key.to_seed()).as_bytes())?;
            f.sync_all()?;
            eprintln!("created a new witness key in {}", path.display());
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The log side of tlog-witness: asks the witness at `url` to cosign `note`
/// (a checkpoint of `size`), starting from `old_size`; `proof_from(old)` gives the
/// consistency proof from an old size. On "409 Conflict" it retries once from
/// the size the witness reports. Returns the witness's signature lines.
pub async fn submit<F, Fut>(
    http: &reqwest::Client,
    url: &str,
    note: &str,
    size: u64,
    mut old_size: u64,
    mut proof_from: F,
) -> anyhow::Result<String>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<candor_core::Digest>>>,
{
    let endpoint = format!("{}/add-checkpoint", url.trim_end_matches('/'));
    for attempt in 0..2 {
        let proof = if old_size == 0 || old_size == size {
            Vec::new()
        } else {
            proof_from(old_size).await?
        };
        let body = AddCheckpoint {
            old_size,
            proof,
            note: note.to_string(),
        }
        .encode();
        let resp = http
            .post(&endpoint)
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {endpoint}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::OK {
            return Ok(text);
        }
        if status == reqwest::StatusCode::CONFLICT
            && attempt == 0
            && let Ok(latest) = text.trim().parse::<u64>()
            && latest != old_size
            && latest <= size
        {
            old_size = latest;
            continue;
        }
        bail!("{endpoint} answered {status}: {}", text.trim());
    }
    bail!("{endpoint}: the witness's size kept changing")
}
