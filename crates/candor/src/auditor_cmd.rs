//! `candor auditor`: the third-party auditor as a long-running process.
//!
//! It follows one deployment through one or more endpoints (members or front
//! doors): audits every epoch transition with `candor_client::Auditor` (the
//! transition proof, the head extending its own copy of the epoch log, time
//! never going back), cosigns each verified head and submits the cosignature;
//! compares the heads every endpoint serves (a different signed head for an
//! epoch it verified is a split view); checks the SMTs shown to it.
//!
//! Its state (`audit-dir/auditor-state`: the last verified head and the log's
//! leaf hashes) is replaced atomically after every batch of epochs, so after
//! kill -9 it resumes where it was (epochs audited after the last write are
//! audited again; resubmitting a cosignature changes nothing).
//!
//! An alarm is an ERROR line, a file of verifiable evidence under
//! `audit-dir/evidence/` (`candor verify evidence FILE` re-checks it), the
//! `candor_auditor_alarms_total` metric, an optional webhook POST, and with
//! `--fail-fast` exit code 3.
//!
//! HTTP (`--listen`): `GET /cosigned` (the newest cosigned head), `GET
//! /cosigned/<epoch>`, `POST /smt` (JSON `{"smt": hex, "label": "..."}`: an
//! SMT to hold the service to), `GET /healthz`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use candor_client::auditor::{AuditEvent, Auditor, SmtStatus};
use candor_client::{Client, ClientError, EquivocationEvidence};
use candor_core::signed::{SignedHead, SignedMutationTimestamp};
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::cli::ConnectArgs;
use crate::cmds::{Failure, connect_to};

/// `candor auditor`.
#[derive(Debug, Args)]
pub struct AuditorArgs {
    /// The deployment's first endpoint (`--target`), its pin and TLS settings.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// More endpoints of the same deployment: audited from when the others fail,
    /// and compared with each other (a split view is an alarm). Repeat.
    #[arg(long = "endpoint")]
    pub endpoints: Vec<String>,
    /// The auditor's Ed25519 key: a file with the 32-byte seed in hex, created
    /// (mode 0600) if missing.
    #[arg(long)]
    pub key_file: PathBuf,
    /// Where the auditor keeps its state, its cosigned heads and evidence.
    #[arg(long)]
    pub audit_dir: PathBuf,
    /// Do not submit cosignatures to the service.
    #[arg(long)]
    pub no_submit: bool,
    /// HTTP listener for the cosigned heads and SMT reports.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Prometheus `/metrics` listener.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// POSTs each alarm as JSON to this URL.
    #[arg(long)]
    pub webhook: Option<String>,
    /// Exit with code 3 at the first alarm (after recording its evidence).
    #[arg(long)]
    pub fail_fast: bool,
    /// How often to look for new epochs.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll: Duration,
    /// Exit once every signed epoch is audited (a one-off run).
    #[arg(long)]
    pub once: bool,
}

const STATE_FILE: &str = "auditor-state";
const COSIGNED_FILE: &str = "cosigned-latest";
/// Cosigned heads kept in memory for `GET /cosigned/<epoch>`.
const KEEP_COSIGNED: usize = 4096;
/// Epochs audited between two state writes.
const BATCH: u64 = 256;

type Cosigned = Arc<Mutex<BTreeMap<u64, (Vec<u8>, Vec<u8>)>>>;

struct SmtReport {
    smt: SignedMutationTimestamp,
    label: Option<Vec<u8>>,
}

struct Alarms {
    dir: PathBuf,
    auditor: String,
    webhook: Option<String>,
    http: reqwest::Client,
    fail_fast: bool,
}

impl Alarms {
    /// Records one alarm; `Err` when `--fail-fast` says to stop.
    async fn raise(
        &self,
        kind: &str,
        epoch: u64,
        endpoint: &str,
        detail: &str,
        evidence: Option<Vec<u8>>,
    ) -> Result<(), Failure> {
        let file = match &evidence {
            Some(bytes) => {
                let dir = self.dir.join("evidence");
                let path = dir.join(format!("epoch{epoch}-{kind}.bin"));
                let written = std::fs::create_dir_all(&dir).and_then(|()| {
                    crate::witness::write_atomically(
                        &dir,
                        &format!("epoch{epoch}-{kind}.bin"),
                        bytes,
                    )
                });
                match written {
                    Ok(()) => Some(path),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write the evidence file");
                        None
                    }
                }
            }
            None => None,
        };
        tracing::error!(
            alarm = kind,
            epoch,
            endpoint,
            evidence = file.as_ref().map(|p| p.display().to_string()),
            "AUDIT ALARM: {detail}"
        );
        candor_telemetry::metrics().auditor_alarms.add(
            1,
            &[
                opentelemetry::KeyValue::new("auditor", self.auditor.clone()),
                opentelemetry::KeyValue::new("kind", kind.to_string()),
            ],
        );
        if let Some(url) = &self.webhook {
            let body = json!({
                "alarm": kind,
                "epoch": epoch,
                "endpoint": endpoint,
                "detail": detail,
                "auditor": self.auditor,
                "evidence_hex": evidence.as_ref().map(hex::encode),
            });
            if let Err(e) = self.http.post(url).json(&body).send().await {
                tracing::error!(error = %e, url, "alarm webhook failed");
            }
        }
        if self.fail_fast {
            return Err(Failure::verification(format!(
                "{kind} at epoch {epoch} ({endpoint}): {detail}{}",
                file.map(|p| format!("; evidence in {}", p.display()))
                    .unwrap_or_default()
            )));
        }
        Ok(())
    }
}

/// Runs the auditor (see the module docs).
pub async fn run(a: AuditorArgs) -> Result<(), Failure> {
    let usage = |e: anyhow::Error| Failure::usage(e);
    let key = crate::witness::load_or_create_key(&a.key_file).map_err(usage)?;
    std::fs::create_dir_all(&a.audit_dir).map_err(|e| {
        usage(anyhow::anyhow!(
            "cannot create {}: {e}",
            a.audit_dir.display()
        ))
    })?;
    let mut endpoints = vec![a.connect.target.clone()];
    endpoints.extend(a.endpoints.iter().cloned());
    let auditor_id = hex::encode(key.public_key().0);

    // The first endpoint that answers gives the configuration chain to resume under.
    let mut clients: Vec<Option<Client>> = vec![None; endpoints.len()];
    let first = loop {
        let mut got = None;
        for (i, ep) in endpoints.iter().enumerate() {
            match connect_to(&a.connect, ep).await {
                Ok(c) => {
                    got = Some((i, c));
                    break;
                }
                Err(e) => tracing::warn!(endpoint = %ep, error = e.message(), "cannot connect"),
            }
        }
        if let Some(g) = got {
            break g;
        }
        tokio::select! {
            _ = crate::dev::shutdown_signal() => return Ok(()),
            _ = tokio::time::sleep(a.poll) => {}
        }
    };
    let mut primary = first.0;
    let chain = (*first.1.chain()).clone();
    clients[first.0] = Some(first.1);
    let state_path = a.audit_dir.join(STATE_FILE);
    let mut auditor = match std::fs::read(&state_path) {
        Ok(bytes) => {
            let au = Auditor::resume(chain, key, &bytes).map_err(|e| {
                usage(anyhow::anyhow!(
                    "{} does not resume ({e}); move it away to audit from epoch 1",
                    state_path.display()
                ))
            })?;
            println!(
                "candor auditor {auditor_id} resumed: next epoch {}",
                au.next_epoch()
            );
            au
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("candor auditor {auditor_id} starting at epoch 1");
            Auditor::new(chain, key)
        }
        Err(e) => {
            return Err(usage(anyhow::anyhow!(
                "reading {}: {e}",
                state_path.display()
            )));
        }
    };
    let cosigned: Cosigned = Arc::new(Mutex::new(BTreeMap::new()));
    if let Ok(text) = std::fs::read_to_string(a.audit_dir.join(COSIGNED_FILE))
        && let Some((h, c)) = text.trim().split_once(' ')
        && let (Ok(h), Ok(c)) = (hex::decode(h), hex::decode(c))
        && let Ok(head) = SignedHead::decode(&h)
    {
        cosigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(head.head.epoch, (h, c));
    }
    let (smt_tx, mut smt_rx) = mpsc::channel::<SmtReport>(1024);
    if let Some(addr) = a.listen {
        let app = axum::Router::new()
            .route("/cosigned", axum::routing::get(latest_cosigned))
            .route("/cosigned/{epoch}", axum::routing::get(cosigned_at))
            .route("/smt", axum::routing::post(report_smt))
            .route("/healthz", axum::routing::get(|| async { "ok\n" }))
            .with_state((Arc::clone(&cosigned), smt_tx.clone()));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| usage(anyhow::anyhow!("cannot listen on {addr}: {e}")))?;
        let bound = listener.local_addr().map_err(|e| usage(e.into()))?;
        println!("  serving http://{bound}/cosigned");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "auditor HTTP server stopped");
            }
        });
    }
    if let Some(addr) = a.metrics_listen {
        let mut config = crate::config::Config::default();
        config.telemetry.metrics_listen = Some(addr);
        crate::telemetry::serve_metrics(&config, Arc::new(|| Ok(())))
            .await
            .map_err(usage)?;
    }
    let alarms = Arc::new(Alarms {
        dir: a.audit_dir.clone(),
        auditor: auditor_id.clone(),
        webhook: a.webhook.clone(),
        http: reqwest::Client::new(),
        fail_fast: a.fail_fast,
    });
    // Broken promises found by the SMT watchers (label histories) come back here.
    let (broken_tx, mut broken_rx) = mpsc::channel::<(u64, String, Vec<u8>)>(64);
    let metrics = candor_telemetry::metrics();
    let auditor_kv = [opentelemetry::KeyValue::new("auditor", auditor_id.clone())];
    if let Some(h) = auditor.last_head() {
        metrics
            .auditor_cosigned_epoch
            .record(h.head.epoch, &auditor_kv);
    }

    loop {
        // Reports that arrived meanwhile.
        while let Ok(r) = smt_rx.try_recv() {
            check_smt(&mut auditor, r, &clients, primary, &broken_tx);
        }
        while let Ok((epoch, detail, evidence)) = broken_rx.try_recv() {
            alarms
                .raise(
                    "broken_promise",
                    epoch,
                    &endpoints[primary],
                    &detail,
                    Some(evidence),
                )
                .await?;
        }
        // Audit from the primary endpoint, falling over to the next.
        let mut caught_up = false;
        for k in 0..endpoints.len() {
            let i = (primary + k) % endpoints.len();
            let client = match &clients[i] {
                Some(c) => c.clone(),
                None => match connect_to(&a.connect, &endpoints[i]).await {
                    Ok(c) => {
                        clients[i] = Some(c.clone());
                        c
                    }
                    Err(e) => {
                        tracing::warn!(endpoint = %endpoints[i], error = e.message(), "cannot connect");
                        continue;
                    }
                },
            };
            match auditor.follow(&client, !a.no_submit, Some(BATCH)).await {
                Ok(reports) => {
                    primary = i;
                    persist(&a.audit_dir, &auditor);
                    caught_up = (reports.len() as u64) < BATCH;
                    for r in &reports {
                        for e in r.alarms() {
                            let (kind, evidence) = alarm_of(e);
                            alarms
                                .raise(kind, r.epoch, &endpoints[i], &format!("{e:?}"), evidence)
                                .await?;
                        }
                        if let (true, Some(c), Some(h)) =
                            (r.accepted, &r.cosignature, auditor.last_head())
                            && h.head.epoch == r.epoch
                        {
                            remember_cosigned(&a.audit_dir, &cosigned, h, &c.encode());
                        }
                    }
                    if let Some(h) = auditor.last_head() {
                        metrics
                            .auditor_cosigned_epoch
                            .record(h.head.epoch, &auditor_kv);
                    }
                    break;
                }
                Err(ClientError::Equivocation(ev)) => {
                    // The endpoint's own answers contradict each other.
                    alarms
                        .raise(
                            "equivocation",
                            ev.epoch(),
                            &endpoints[i],
                            "two signed heads for one epoch",
                            Some(ev.to_bytes()),
                        )
                        .await?;
                    break;
                }
                Err(e) if e.is_security_event() => {
                    alarms
                        .raise(
                            "invalid_response",
                            auditor.next_epoch(),
                            &endpoints[i],
                            &e.to_string(),
                            None,
                        )
                        .await?;
                    break;
                }
                Err(e) => {
                    tracing::warn!(endpoint = %endpoints[i], error = %e, "audit failed; trying the next endpoint");
                    clients[i] = None;
                }
            }
        }
        // Split views: every other endpoint's latest head against the primary's.
        if let Some(p) = clients[primary].clone() {
            for (j, ep) in endpoints.iter().enumerate() {
                if j == primary {
                    continue;
                }
                let Some(c) = clients[j].clone().or(connect_to(&a.connect, ep).await.ok()) else {
                    continue;
                };
                clients[j] = Some(c.clone());
                if let Some((epoch, detail, ev)) = compare(&p, &c).await {
                    alarms
                        .raise("equivocation", epoch, ep, &detail, Some(ev.to_bytes()))
                        .await?;
                }
            }
        }
        if a.once && caught_up {
            return Ok(());
        }
        tokio::select! {
            _ = crate::dev::shutdown_signal() => {
                persist(&a.audit_dir, &auditor);
                return Ok(());
            }
            _ = tokio::time::sleep(a.poll) => {}
        }
    }
}

/// The alarm kind and its evidence bytes, where the event carries evidence.
fn alarm_of(e: &AuditEvent) -> (&'static str, Option<Vec<u8>>) {
    match e {
        AuditEvent::Equivocation(ev) => ("equivocation", Some(ev.to_bytes())),
        AuditEvent::InvalidResponse { .. } => ("invalid_response", None),
        AuditEvent::TimeRegression { .. } => ("time_regression", None),
        AuditEvent::LogMismatch { .. } => ("log_mismatch", None),
        AuditEvent::BrokenPromise { .. } => ("broken_promise", None),
        _ => ("other", None),
    }
}

/// A head the other endpoint serves for an epoch the primary also serves, when
/// the two differ: the evidence of a split view.
async fn compare(primary: &Client, other: &Client) -> Option<(u64, String, EquivocationEvidence)> {
    let theirs = match other.latest_head().await {
        Ok(h) => h,
        Err(ClientError::Equivocation(ev)) => {
            let e = ev.epoch();
            return Some((e, "the endpoint contradicted itself".into(), *ev));
        }
        Err(e) => {
            tracing::debug!(error = %e, "endpoint not compared");
            return None;
        }
    };
    // An epoch the primary does not serve yet is compared on a later round.
    let e = theirs.head.epoch;
    let ours = primary.head(e).await.ok()?;
    (ours != theirs).then(|| {
        (
            e,
            "two endpoints of the deployment serve different signed heads".into(),
            EquivocationEvidence {
                first: ours,
                second: theirs,
            },
        )
    })
}

fn check_smt(
    auditor: &mut Auditor,
    r: SmtReport,
    clients: &[Option<Client>],
    primary: usize,
    broken: &mpsc::Sender<(u64, String, Vec<u8>)>,
) {
    match auditor.check_smt(&r.smt) {
        Ok(SmtStatus::Honoured { epoch }) => {
            tracing::info!(epoch, "SMT honoured");
            return;
        }
        Ok(s) => tracing::info!(status = ?s, "SMT recorded"),
        Err(e) => {
            tracing::warn!(error = %e, "an SMT that does not verify promises nothing");
            return;
        }
    }
    // With its label, the label's history settles the promise with evidence.
    if let (Some(label), Some(client)) = (r.label, clients.get(primary).cloned().flatten()) {
        let tx = broken.clone();
        tokio::spawn(async move {
            match client
                .wait_merged(&label, &r.smt, Duration::from_millis(500))
                .await
            {
                Ok(m) => tracing::info!(epoch = m.epoch(), "SMT promise kept"),
                Err(ClientError::BrokenPromise(ev)) => {
                    let epoch = ev.first_after_deadline.head.epoch;
                    let _ = tx
                        .send((
                            epoch,
                            "an SMT's deadline passed without its version".into(),
                            ev.to_bytes(),
                        ))
                        .await;
                }
                Err(e) => tracing::warn!(error = %e, "SMT not settled"),
            }
        });
    }
}

fn persist(dir: &Path, auditor: &Auditor) {
    if let Err(e) = crate::witness::write_atomically(dir, STATE_FILE, &auditor.state_bytes()) {
        tracing::error!(error = %e, "cannot persist the auditor state");
    }
}

fn remember_cosigned(dir: &Path, cosigned: &Cosigned, head: &SignedHead, cosignature: &[u8]) {
    let h = head.encode();
    let line = format!("{} {}\n", hex::encode(&h), hex::encode(cosignature));
    if let Err(e) = crate::witness::write_atomically(dir, COSIGNED_FILE, line.as_bytes()) {
        tracing::error!(error = %e, "cannot persist the cosigned head");
    }
    let mut m = cosigned.lock().unwrap_or_else(|p| p.into_inner());
    m.insert(head.head.epoch, (h, cosignature.to_vec()));
    while m.len() > KEEP_COSIGNED {
        m.pop_first();
    }
}

type HttpState = (Cosigned, mpsc::Sender<SmtReport>);

fn cosigned_json(epoch: u64, (h, c): &(Vec<u8>, Vec<u8>)) -> Value {
    json!({ "epoch": epoch, "signed_head": hex::encode(h), "cosignature": hex::encode(c) })
}

fn json_response(v: Value) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn latest_cosigned(State((c, _)): State<HttpState>) -> Response {
    let m = c.lock().unwrap_or_else(|p| p.into_inner());
    match m.last_key_value() {
        Some((e, v)) => json_response(cosigned_json(*e, v)),
        None => (StatusCode::NOT_FOUND, "nothing cosigned yet\n").into_response(),
    }
}

async fn cosigned_at(State((c, _)): State<HttpState>, UrlPath(epoch): UrlPath<u64>) -> Response {
    let m = c.lock().unwrap_or_else(|p| p.into_inner());
    match m.get(&epoch) {
        Some(v) => json_response(cosigned_json(epoch, v)),
        None => (StatusCode::NOT_FOUND, "not cosigned (or no longer kept)\n").into_response(),
    }
}

async fn report_smt(State((_, tx)): State<HttpState>, body: String) -> Response {
    let parsed: Result<(SignedMutationTimestamp, Option<Vec<u8>>), String> = (|| {
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("not JSON: {e}"))?;
        let smt = v["smt"].as_str().ok_or("no \"smt\" (hex)")?;
        let bytes = hex::decode(smt).map_err(|_| "\"smt\" is not hex")?;
        let smt = SignedMutationTimestamp::decode(&bytes).map_err(|e| format!("SMT: {e}"))?;
        Ok((smt, v["label"].as_str().map(|l| l.as_bytes().to_vec())))
    })();
    match parsed {
        Ok((smt, label)) => match tx.try_send(SmtReport { smt, label }) {
            Ok(()) => (StatusCode::ACCEPTED, "accepted\n").into_response(),
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy, retry\n").into_response(),
        },
        Err(why) => (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response(),
    }
}
