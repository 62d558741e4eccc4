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
    /// gRPC listener (`candor.v1.Auditor`: the cosigned heads).
    #[arg(long)]
    pub grpc_listen: Option<SocketAddr>,
    /// Prometheus `/metrics` listener.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Also act as a C2SP witness under this name on the `--listen` HTTP port
    /// (`POST /add-checkpoint`, c2sp.org/tlog-witness), with the auditor's key.
    #[arg(long, requires_all = ["listen", "witness_log"])]
    pub witness_name: Option<String>,
    /// A log the witness accepts (its verifier key; for Candor, `candor
    /// checkpoint --vkey`). Repeat.
    #[arg(long)]
    pub witness_log: Vec<String>,
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
    /// Audit a public export directory (`candor export`) instead of the API.
    #[arg(long, conflicts_with = "from_url")]
    pub from_dir: Option<PathBuf>,
    /// Audit a public export served over HTTP(S) (the same layout).
    #[arg(long)]
    pub from_url: Option<String>,
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
    if a.from_dir.is_some() || a.from_url.is_some() {
        return run_offline(&a, key, &auditor_id).await;
    }

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
    let mut auditor = open_auditor(
        &a.audit_dir,
        chain,
        candor_core::signed::SigningKeyPair::from_seed(&key.to_seed()),
        &auditor_id,
    )?;
    // The sender is held here so the channel stays open without a listener.
    let (cosigned, alarms, _smt_tx, mut smt_rx) = serve(&a, &auditor_id, &key).await?;
    // Broken promises found by the SMT watchers (label histories) come back here.
    let (broken_tx, mut broken_rx) = mpsc::channel::<(u64, String, Vec<u8>)>(64);
    record(&[], "", &auditor, &alarms, &a.audit_dir, &cosigned).await?;

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
                    record(
                        &reports,
                        &endpoints[i],
                        &auditor,
                        &alarms,
                        &a.audit_dir,
                        &cosigned,
                    )
                    .await?;
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

use candor_proto::candor::v1 as pb;

/// `candor.v1.Auditor` over the cosigned heads.
struct AuditorGrpc(Cosigned);

#[tonic::async_trait]
impl pb::auditor_server::Auditor for AuditorGrpc {
    async fn get_cosigned(
        &self,
        request: tonic::Request<pb::GetCosignedRequest>,
    ) -> Result<tonic::Response<pb::CosignedHead>, tonic::Status> {
        let epoch = request.into_inner().epoch;
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let found = if epoch == 0 {
            m.last_key_value().map(|(e, v)| (*e, v.clone()))
        } else {
            m.get(&epoch).map(|v| (epoch, v.clone()))
        };
        match found {
            Some((epoch, (h, c))) => Ok(tonic::Response::new(pb::CosignedHead {
                epoch,
                signed_head: h,
                cosignature: c,
            })),
            None if epoch == 0 => Err(tonic::Status::not_found("nothing cosigned yet")),
            None => Err(tonic::Status::not_found(format!(
                "epoch {epoch} is not cosigned here (or no longer kept)"
            ))),
        }
    }
}

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

/// The cosigned heads (reloaded), the HTTP and metrics listeners, the alarm sink.
async fn serve(
    a: &AuditorArgs,
    auditor_id: &str,
    key: &candor_core::signed::SigningKeyPair,
) -> Result<
    (
        Cosigned,
        Arc<Alarms>,
        mpsc::Sender<SmtReport>,
        mpsc::Receiver<SmtReport>,
    ),
    Failure,
> {
    let usage = |e: anyhow::Error| Failure::usage(e);
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
    let (smt_tx, smt_rx) = mpsc::channel::<SmtReport>(1024);
    if let Some(addr) = a.listen {
        let app = axum::Router::new()
            .route("/cosigned", axum::routing::get(latest_cosigned))
            .route("/cosigned/{epoch}", axum::routing::get(cosigned_at))
            .route("/smt", axum::routing::post(report_smt))
            .route("/healthz", axum::routing::get(|| async { "ok\n" }))
            .with_state((Arc::clone(&cosigned), smt_tx.clone()));
        let app = match &a.witness_name {
            Some(name) => {
                let w = crate::witness::Shared::open(
                    name,
                    candor_core::signed::SigningKeyPair::from_seed(&key.to_seed()),
                    &a.witness_log,
                    &a.audit_dir.join("witness"),
                )
                .map_err(usage)?;
                println!("  witness {name}, cosigner vkey: {}", w.vkey());
                app.merge(crate::witness::router(w))
            }
            None => app,
        };
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
    if let Some(addr) = a.grpc_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| usage(anyhow::anyhow!("cannot listen on {addr}: {e}")))?;
        let bound = listener.local_addr().map_err(|e| usage(e.into()))?;
        println!("  serving gRPC candor.v1.Auditor on {bound}");
        let svc = pb::auditor_server::AuditorServer::new(AuditorGrpc(Arc::clone(&cosigned)));
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await
            {
                tracing::error!(error = %e, "auditor gRPC server stopped");
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
        auditor: auditor_id.to_string(),
        webhook: a.webhook.clone(),
        http: reqwest::Client::new(),
        fail_fast: a.fail_fast,
    });
    Ok((cosigned, alarms, smt_tx, smt_rx))
}

/// Resumes from the state file, or starts at epoch 1 without one.
fn open_auditor(
    dir: &Path,
    chain: candor_core::rotation::ConfigChain,
    key: candor_core::signed::SigningKeyPair,
    auditor_id: &str,
) -> Result<Auditor, Failure> {
    let state_path = dir.join(STATE_FILE);
    match std::fs::read(&state_path) {
        Ok(bytes) => {
            let au = Auditor::resume(chain, key, &bytes).map_err(|e| {
                Failure::usage(anyhow::anyhow!(
                    "{} does not resume ({e}); move it away to audit from epoch 1",
                    state_path.display()
                ))
            })?;
            println!(
                "candor auditor {auditor_id} resumed: next epoch {}",
                au.next_epoch()
            );
            Ok(au)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("candor auditor {auditor_id} starting at epoch 1");
            Ok(Auditor::new(chain, key))
        }
        Err(e) => Err(Failure::usage(anyhow::anyhow!(
            "reading {}: {e}",
            state_path.display()
        ))),
    }
}

/// Raises the reports' alarms, remembers the cosigned heads, updates the metric.
async fn record(
    reports: &[candor_client::auditor::EpochReport],
    source: &str,
    auditor: &Auditor,
    alarms: &Alarms,
    dir: &Path,
    cosigned: &Cosigned,
) -> Result<(), Failure> {
    for r in reports {
        for e in r.alarms() {
            let (kind, evidence) = alarm_of(e);
            alarms
                .raise(kind, r.epoch, source, &format!("{e:?}"), evidence)
                .await?;
        }
        if let (true, Some(c), Some(h)) = (r.accepted, &r.cosignature, auditor.last_head())
            && h.head.epoch == r.epoch
        {
            remember_cosigned(dir, cosigned, h, &c.encode());
        }
    }
    if let Some(h) = auditor.last_head() {
        candor_telemetry::metrics().auditor_cosigned_epoch.record(
            h.head.epoch,
            &[opentelemetry::KeyValue::new(
                "auditor",
                alarms.auditor.clone(),
            )],
        );
    }
    Ok(())
}

/// Audits a public export (`candor export`) instead of the gRPC API: the
/// configuration chain verified from the pin, then `audit/<N>` in order.
/// Cosignatures are kept and served here (there is no service to submit to).
async fn run_offline(
    a: &AuditorArgs,
    key: candor_core::signed::SigningKeyPair,
    auditor_id: &str,
) -> Result<(), Failure> {
    use crate::export_cmd::{ExportSource, tile_path};
    use prost::Message;
    let source = match (&a.from_dir, &a.from_url) {
        (Some(d), None) => ExportSource::Dir(d.clone()),
        (None, Some(u)) => ExportSource::Url(u.clone(), reqwest::Client::new()),
        _ => {
            return Err(Failure::usage(anyhow::anyhow!(
                "give one of --from-dir and --from-url"
            )));
        }
    };
    let name = a
        .from_dir
        .as_ref()
        .map(|d| d.display().to_string())
        .or(a.from_url.clone())
        .unwrap_or_default();
    let pin = crate::cmds::pin(&a.connect)?.ok_or_else(|| {
        Failure::usage(anyhow::anyhow!(
            "an offline audit needs a pin: --config-digest, --pin or DATA_DIR/config.bin"
        ))
    })?;
    let fetch = |rel: String| {
        let (source, name) = (&source, &name);
        async move {
            source
                .get(&rel)
                .await
                .map_err(|e| Failure::transport(format!("error: {name} {rel}: {e:#}")))
        }
    };
    let chain_of = |bytes: Vec<u8>| -> Result<candor_core::rotation::ConfigChain, Failure> {
        let resp = candor_proto::candor::v1::GetConfigResponse::decode(bytes.as_slice())
            .map_err(|e| Failure::verification(format!("the export's config: {e}")))?;
        Ok(candor_client::verify::config_chain(&pin, &resp)?)
    };
    let chain = loop {
        if let Some(b) = fetch("config".into()).await? {
            break chain_of(b)?;
        }
        if a.once {
            return Err(Failure::usage(anyhow::anyhow!("{name} has no config file")));
        }
        tokio::time::sleep(a.poll).await;
    };
    let (cosigned, alarms, _smt_tx, _smt_rx) = serve(a, auditor_id, &key).await?;
    let mut auditor = open_auditor(&a.audit_dir, chain, key, auditor_id)?;
    record(&[], "", &auditor, &alarms, &a.audit_dir, &cosigned).await?;
    loop {
        if let Some(b) = fetch("config".into()).await? {
            auditor.learn_configs(&chain_of(b)?);
        }
        let mut reports = Vec::new();
        loop {
            let e = auditor.next_epoch();
            let Some(bytes) = fetch(format!("audit/{}", tile_path(e))).await? else {
                break;
            };
            let report = match candor_proto::candor::v1::AuditResponse::decode(bytes.as_slice()) {
                Ok(resp) => auditor.process(
                    &resp,
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                ),
                Err(err) => {
                    alarms
                        .raise(
                            "invalid_response",
                            e,
                            &name,
                            &format!("audit/{}: {err}", tile_path(e)),
                            None,
                        )
                        .await?;
                    break;
                }
            };
            let accepted = report.accepted;
            reports.push(report);
            if !accepted || reports.len() as u64 >= BATCH {
                break;
            }
        }
        let n = reports.len();
        persist(&a.audit_dir, &auditor);
        record(&reports, &name, &auditor, &alarms, &a.audit_dir, &cosigned).await?;
        if a.once && (n as u64) < BATCH {
            println!(
                "audited {name} up to epoch {}",
                auditor.next_epoch().saturating_sub(1)
            );
            return Ok(());
        }
        if (n as u64) < BATCH {
            tokio::select! {
                _ = crate::dev::shutdown_signal() => return Ok(()),
                _ = tokio::time::sleep(a.poll) => {}
            }
        }
    }
}
