//! Client commands: each verifies everything it receives with
//! `candor-client` against the pinned configuration.

use std::path::Path;
use std::time::Duration;

use candor_client::{Client, ClientError, HeadStateFile, PinnedConfig};
use candor_core::signed::{PublicConfig, SignedHead, SignedMutationTimestamp};
use serde_json::{Value, json};

use crate::cli::{
    AuditArgs, CheckpointArgs, Command, ConnectArgs, EraseArgs, HistoryArgs, LookupArgs,
    PublishArgs, VerifyArgs, VerifyWhat,
};
use crate::dev::CONFIG_FILE;

/// A failed command: its exit code and message.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Exit 1: usage or configuration.
    pub fn usage(e: anyhow::Error) -> Failure {
        Failure {
            code: 1,
            message: format!("error: {}", join_chain(e.chain())),
        }
    }

    /// Exit 2: transport failure or an error status from the server.
    pub fn transport(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }

    /// Exit 3: something did not verify.
    pub fn verification(msg: impl std::fmt::Display) -> Failure {
        Failure {
            code: 3,
            message: format!("VERIFICATION FAILED: {msg}"),
        }
    }

    pub fn code(&self) -> u8 {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The failure as one JSON object, for `--json`.
    pub fn to_json(&self) -> Value {
        let kind = match self.code {
            2 => "transport",
            3 => "verification",
            _ => "usage",
        };
        let message = self
            .message
            .strip_prefix("error: ")
            .unwrap_or(&self.message);
        json!({ "error": { "kind": kind, "exit_code": self.code, "message": message } })
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        if let ClientError::StaleHead(_) = &e {
            return Failure::verification(format!(
                "{e}\n  the service (or something between it and you) is serving an old state \
                 as the latest, or it stopped signing epochs; nothing it says is shown as current"
            ));
        }
        if e.is_security_event() {
            return Failure::verification(&e);
        }
        match &e {
            ClientError::Transport(_) => Failure {
                code: 2,
                message: format!("error: cannot reach the service: {}", chain(&e)),
            },
            ClientError::Status(s) => Failure {
                code: 2,
                message: format!(
                    "error: the service answered {:?}: {}",
                    s.code(),
                    s.message()
                ),
            },
            _ => Failure {
                code: 1,
                message: format!("error: {e}"),
            },
        }
    }
}

/// An error with its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    join_chain(std::iter::successors(Some(e), |e| e.source()))
}

/// Joins an error chain with `: `, each message once: many errors print their source
/// in their own message too (`transport: {0}` with `#[source]`, tonic's own errors),
/// so a source already contained in the text so far is skipped.
fn join_chain<E: ToString>(chain: impl Iterator<Item = E>) -> String {
    let mut s = String::new();
    for e in chain {
        let m = e.to_string();
        if s.contains(&m) {
            continue;
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&m);
    }
    s
}

#[test]
fn an_error_chain_prints_each_message_once() {
    let e = anyhow::anyhow!("tcp connect error").context("transport error: tcp connect error");
    let e = e.context("transport");
    assert_eq!(
        join_chain(e.chain()),
        "transport: transport error: tcp connect error"
    );
    assert_eq!(
        chain(e.as_ref()),
        "transport: transport error: tcp connect error"
    );
}

/// Milliseconds since the Unix epoch as an RFC 3339 UTC time.
fn rfc3339_ms(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure::usage(anyhow::anyhow!(msg.into()))
}

type Result<T, E = Failure> = std::result::Result<T, E>;

pub async fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Publish(a) => publish(a).await,
        Command::Erase(a) => erase(a).await,
        Command::Lookup(a) => lookup(a).await,
        Command::History(a) => history(a).await,
        Command::Audit(a) => audit(a).await,
        Command::Verify(a) => verify_cmd(a).await,
        Command::Checkpoint(a) => checkpoint(a).await,
        _ => Err(usage("not a client command")),
    }
}

/// The pin from the flags, or `None` for trust on first use.
pub(crate) fn pin(c: &ConnectArgs) -> Result<Option<PinnedConfig>> {
    if let Some(d) = &c.config_digest {
        return Ok(Some(PinnedConfig::from_hex_digest(d)?));
    }
    let file = match &c.pin {
        Some(p) => Some(p.clone()),
        None => {
            let p = c.data_dir.join(CONFIG_FILE);
            p.is_file().then_some(p)
        }
    };
    if let Some(p) = file {
        let bytes = std::fs::read(&p)
            .map_err(|e| usage(format!("cannot read pin file {}: {e}", p.display())))?;
        return Ok(Some(PinnedConfig::from_config_bytes(&bytes)?));
    }
    if c.tofu {
        return Ok(None);
    }
    Err(usage(format!(
        "no pinned configuration: pass --config-digest HEX (printed by `candor dev`), \
         --pin FILE (a config.bin), run from a directory with {}/{CONFIG_FILE}, \
         or opt in to trust on first use with --tofu",
        c.data_dir.display()
    )))
}

/// TLS settings from `--tls-ca/--tls-cert/--tls-key`; `None` for plaintext.
fn client_tls(c: &ConnectArgs) -> Result<Option<tonic::transport::ClientTlsConfig>> {
    let tls = c.tls.config().map_err(|e| usage(format!("{e:#}")))?;
    if tls.is_none() && c.target.starts_with("https://") {
        return Err(usage(
            "an https:// target needs --tls-ca (the CA that issued the server's certificate)",
        ));
    }
    Ok(tls)
}

/// Connects, then applies the freshness settings and the remembered head
/// of this deployment (see [`HeadStateFile`]).
async fn connect(c: &ConnectArgs) -> Result<Client> {
    let client = connect_only(c).await?;
    let mut options = candor_client::ClientOptions::default();
    if let Some(age) = c.max_head_age {
        options.freshness.max_head_age_ms =
            Some(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
    }
    let client = client.with_options(options);
    let Some(state) = head_state(c, client.config()) else {
        return Ok(client);
    };
    let tracker = state
        .load(&*client.chain())
        .map_err(|e| {
            usage(format!(
                "cannot read the head state {}: {e}",
                state.path().display()
            ))
        })?
        .map_err(|e| {
            usage(format!(
                "the head state {} is unusable ({e}); remove it to start afresh",
                state.path().display()
            ))
        })?;
    Ok(client.with_tracker(tracker))
}

/// The head state file of this deployment (`--state-dir`, else the default);
/// `None` when there is no state directory: then only the head age is checked.
fn head_state(c: &ConnectArgs, config: &PublicConfig) -> Option<HeadStateFile> {
    let dir = c.state_dir.clone().or_else(HeadStateFile::default_dir)?;
    Some(HeadStateFile::new(&dir, &config.digest()))
}

/// Remembers the newest head `client` verified (see [`HeadStateFile`]).
async fn remember(c: &ConnectArgs, client: &Client) -> Result<()> {
    let Some(state) = head_state(c, client.config()) else {
        return Ok(());
    };
    state
        .save(&client.tracker().await, &*client.chain())
        .map_err(|e| {
            usage(format!(
                "cannot write the head state {}: {e}",
                state.path().display()
            ))
        })
}

async fn connect_only(c: &ConnectArgs) -> Result<Client> {
    connect_to(c, &c.target).await
}

/// Connects to `target` with the pin and TLS settings of `c`.
pub(crate) async fn connect_to(c: &ConnectArgs, target: &str) -> Result<Client> {
    let tls = client_tls(c)?;
    let target = target.to_string();
    match (pin(c)?, tls) {
        (Some(p), Some(tls)) => Ok(Client::connect_tls(target, tls, p).await?),
        (None, Some(_)) => Err(usage(
            "trust on first use is not offered over TLS: pin the configuration with \
             --config-digest or --pin",
        )),
        (Some(p), None) => Ok(Client::connect(target, p).await?),
        (None, None) => {
            let (client, config) = Client::connect_tofu(target).await?;
            eprintln!(
                "warning: trust on first use: accepted the served configuration with digest {}; \
                 pin it with --config-digest from now on",
                hex::encode(config.digest())
            );
            Ok(client)
        }
    }
}

/// The full configuration without a connection when the pin is a file.
fn offline_config(c: &ConnectArgs) -> Result<Option<PublicConfig>> {
    match pin(c)? {
        Some(PinnedConfig::Config(cfg)) => Ok(Some(*cfg)),
        _ => Ok(None),
    }
}

/// Prints the result; a closed stdout (`| head`) is not an error.
fn emit(json_out: bool, v: Value, human: String) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = if json_out {
        writeln!(out, "{v}")
    } else {
        writeln!(out, "{human}")
    };
}

/// A value for humans: the text when it is printable UTF-8, else hex.
fn show(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
        _ => format!("hex:{}", hex::encode(v)),
    }
}

fn value_json(v: Option<&[u8]>) -> (Value, Value) {
    match v {
        Some(b) => (
            std::str::from_utf8(b).map_or(Value::Null, |s| Value::String(s.into())),
            Value::String(hex::encode(b)),
        ),
        None => (Value::Null, Value::Null),
    }
}

fn read_value(arg: &str) -> Result<Vec<u8>> {
    match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read(path).map_err(|e| usage(format!("cannot read value file {path}: {e}")))
        }
        None => Ok(arg.as_bytes().to_vec()),
    }
}

/// Bytes from a file (raw, or hex text) or from a hex argument.
fn read_blob(input: &str) -> Result<Vec<u8>> {
    let p = Path::new(input);
    let bytes = if p.is_file() {
        let raw = std::fs::read(p).map_err(|e| usage(format!("cannot read {input}: {e}")))?;
        match std::str::from_utf8(&raw)
            .ok()
            .map(str::trim)
            .map(hex::decode)
        {
            Some(Ok(b)) => b,
            _ => raw,
        }
    } else {
        hex::decode(input.trim())
            .map_err(|e| usage(format!("{input:?} is neither a file nor hex: {e}")))?
    };
    Ok(bytes)
}

fn head_json(h: &SignedHead) -> Value {
    json!({
        "epoch": h.head.epoch,
        "timestamp_ms": h.head.timestamp_ms,
        "map_root": hex::encode(h.head.map_root),
        "log_size": h.head.log_size,
        "log_root": hex::encode(h.head.log_root),
        "config_digest": hex::encode(h.head.config_digest),
        "head_digest": hex::encode(h.head.digest()),
        "signed_head": hex::encode(h.encode()),
    })
}

/// `--token`, else DATA_DIR/dev-token.
fn token_of(token: &Option<String>, c: &ConnectArgs) -> Result<String> {
    match token {
        Some(t) => Ok(t.clone()),
        None => {
            let p = c.data_dir.join("dev-token");
            std::fs::read_to_string(&p)
                .map(|t| t.trim().to_owned())
                .map_err(|_| {
                    usage(format!(
                        "no bearer token: pass --token (or set CANDOR_TOKEN); {} not found",
                        p.display()
                    ))
                })
        }
    }
}

async fn erase(a: EraseArgs) -> Result<()> {
    let token = token_of(&a.token, &a.connect)?;
    let client = connect(&a.connect).await?.with_token(&token)?;
    client.erase(a.label.as_bytes(), a.version).await?;
    emit(
        a.connect.json,
        json!({ "label": a.label, "version": a.version, "erased": true }),
        format!(
            "erased the value of version {} of {:?}: it is served as redacted from now on",
            a.version, a.label
        ),
    );
    Ok(())
}

async fn publish(a: PublishArgs) -> Result<()> {
    let value = read_value(&a.value)?;
    let token = token_of(&a.token, &a.connect)?;
    let client = connect(&a.connect).await?.with_token(&token)?;
    let label = a.label.as_bytes();
    let p = match &a.idempotency_key {
        Some(k) => client.publish_with_key(label, &value, k).await?,
        None => client.publish(label, &value).await?,
    };
    if let Some(path) = &a.monitor_state {
        let mut state = crate::monitor_cmd::load_state(path)?;
        state.expect_publish(&p);
        crate::monitor_cmd::save_state(path, &state)?;
    }
    let mut out = json!({
        "label": a.label,
        "verified": true,
        "version": p.version,
        "index": hex::encode(p.index),
        "shard": p.smt.smt.shard,
        "leaf_hash": hex::encode(p.leaf_hash),
        "timestamp_ms": p.smt.smt.timestamp_ms,
        "merge_deadline_ms": p.merge_deadline_ms(),
        "merge_deadline": rfc3339_ms(p.merge_deadline_ms()),
        "idempotency_key": p.idempotency_key,
        "smt": hex::encode(p.smt.encode()),
    });
    let mut human = format!(
        "published {:?} version {} (SMT verified: signature, VRF index, commitment, leaf)\n  \
         index {}  shard {}\n  merge deadline {}\n  smt {}",
        a.label,
        p.version,
        hex::encode(p.index),
        p.smt.smt.shard,
        rfc3339_ms(p.merge_deadline_ms()),
        hex::encode(p.smt.encode())
    );
    if a.wait {
        let e = wait_merged(&client, label, &p.smt).await?;
        remember(&a.connect, &client).await?;
        out["merged_epoch"] = json!(e);
        human.push_str(&format!(
            "\n  merged into signed epoch {e} (history verified, before the deadline)"
        ));
    }
    emit(a.connect.json, out, human);
    Ok(())
}

/// Waits for the SMT's promise; gives up (exit 2) a little after the
/// deadline if the service stopped signing epochs altogether.
async fn wait_merged(client: &Client, label: &[u8], smt: &SignedMutationTimestamp) -> Result<u64> {
    let cfg = client.config();
    let poll = Duration::from_millis((cfg.epoch_interval_ms / 4).clamp(20, 1000));
    let limit = Duration::from_millis(cfg.max_merge_delay_ms.saturating_add(30_000));
    match tokio::time::timeout(limit, client.wait_merged(label, smt, poll)).await {
        Ok(r) => Ok(r?.epoch()),
        Err(_) => Err(Failure {
            code: 2,
            message: "error: no signed epoch after the merge deadline was observed (is the service signing epochs?)".into(),
        }),
    }
}

async fn lookup(a: LookupArgs) -> Result<()> {
    let client = connect(&a.connect).await?;
    let v = client.lookup(a.label.as_bytes(), a.epoch).await?;
    remember(&a.connect, &client).await?;
    let (value, value_hex) = value_json(v.value());
    let out = json!({
        "label": a.label,
        "verified": true,
        "epoch": v.epoch(),
        "found": v.is_found(),
        "version": v.version(),
        "value": value,
        "value_hex": value_hex,
        "forgotten": v.is_found() && v.value().is_none(),
        "index": hex::encode(v.index),
        "head": head_json(&v.head),
    });
    let human = match &v.entry {
        Some(e) => format!(
            "{:?} at epoch {}: version {} (proof verified)\n  value: {}",
            a.label,
            v.epoch(),
            e.version,
            e.value
                .as_deref()
                .map_or("(forgotten: only the commitment is proven)".into(), show)
        ),
        None => format!(
            "{:?} at epoch {}: not present (non-membership proof verified)",
            a.label,
            v.epoch()
        ),
    };
    emit(a.connect.json, out, human);
    Ok(())
}

async fn history(a: HistoryArgs) -> Result<()> {
    let client = connect(&a.connect).await?;
    let h = client.history_at(a.label.as_bytes(), a.epoch).await?;
    remember(&a.connect, &client).await?;
    let versions: Vec<Value> = h
        .versions()
        .iter()
        .map(|v| {
            let (value, value_hex) = value_json(v.value.as_deref());
            json!({
                "version": v.version,
                "value": value,
                "value_hex": value_hex,
                "forgotten": v.value.is_none(),
                "leaf_hash": hex::encode(v.leaf_hash),
            })
        })
        .collect();
    let out = json!({
        "label": a.label,
        "verified": true,
        "epoch": h.epoch(),
        "index": hex::encode(h.index()),
        "versions": versions,
        "head": head_json(&h.head),
    });
    let mut human = format!(
        "{:?} at epoch {}: {} version(s), chain and map path verified",
        a.label,
        h.epoch(),
        h.latest_version()
    );
    for v in h.versions() {
        human.push_str(&format!(
            "\n  v{}: {}",
            v.version,
            v.value.as_deref().map_or("(forgotten)".into(), show)
        ));
    }
    emit(a.connect.json, out, human);
    Ok(())
}

async fn audit(a: AuditArgs) -> Result<()> {
    let client = connect(&a.connect).await?;
    let latest = client.latest_head().await?;
    remember(&a.connect, &client).await?;
    let to = a.to.unwrap_or(latest.head.epoch);
    let from = a.from.unwrap_or(1);
    if from == 0 || from > to {
        return Err(usage(format!(
            "need 1 ≤ --from ≤ --to, got {from} and {to}"
        )));
    }
    if to > latest.head.epoch {
        return Err(Failure {
            code: 2,
            message: format!(
                "error: epoch {to} is not signed yet (latest is {})",
                latest.head.epoch
            ),
        });
    }
    let sum = candor_client::audit_range(&client, from, to).await?;
    let (labels, leaves, last) = (sum.labels_changed, sum.leaves_added, &sum.last);
    let mode = match sum.mode {
        candor_client::AuditMode::Full => "full",
        candor_client::AuditMode::Window => "window",
    };
    let log_root = sum.log_root.map(hex::encode);
    let out = json!({
        "verified": true,
        "mode": mode,
        "from": from,
        "to": to,
        "epochs": to - from + 1,
        "labels_changed": labels,
        "leaves_added": leaves,
        "last_head": head_json(last),
        "auditor_log_root": log_root,
    });
    let human = format!(
        "audited epochs {from}..={to} ({mode}): every transition verified\n  \
         {labels} label change(s), {leaves} new leaf/leaves\n  \
         epoch {to} head digest {}\n  log root {}",
        hex::encode(last.head.digest()),
        hex::encode(last.head.log_root)
    );
    emit(a.connect.json, out, human);
    Ok(())
}

async fn checkpoint(a: CheckpointArgs) -> Result<()> {
    use candor_core::checkpoint::{
        ALG_COSIGNATURE_V1, ALG_ED25519, NoteSignature, parse_verifier_key, verifier_key,
        verify_cosignature_v1,
    };
    if a.witnesses.len() != a.witness_vkeys.len() {
        return Err(usage(format!(
            "{} --witness and {} --witness-vkey: give one key per witness, in order",
            a.witnesses.len(),
            a.witness_vkeys.len()
        )));
    }
    let mut cosigners = Vec::new();
    for v in &a.witness_vkeys {
        let (name, alg, key) =
            parse_verifier_key(v).map_err(|e| usage(format!("--witness-vkey {v:?}: {e}")))?;
        if alg != ALG_COSIGNATURE_V1 {
            return Err(usage(format!(
                "--witness-vkey {v:?}: not a cosigner key (type 0x04)"
            )));
        }
        cosigners.push((name, key));
    }
    let client = connect(&a.connect).await?;
    let v = client.checkpoint(a.size.unwrap_or(0), None).await?;
    remember(&a.connect, &client).await?;
    let config = client
        .chain()
        .get(&v.head.head.config_digest)
        .cloned()
        .ok_or_else(|| usage("the head's configuration is not in the verified chain"))?;
    let vkey = verifier_key(&config.namespace, ALG_ED25519, &config.head_key);
    if a.vkey {
        emit(
            a.connect.json,
            json!({ "vkey": vkey, "origin": config.namespace }),
            vkey,
        );
        return Ok(());
    }
    let http = reqwest::Client::new();
    let mut cosigned = v.note.clone();
    let mut witnessed = Vec::new();
    for (url, (name, key)) in a.witnesses.iter().zip(&cosigners) {
        let size = v.checkpoint.size;
        let lines = crate::witness::submit(&http, url, &v.note, size, 0, |old| {
            let client = &client;
            async move {
                let before = client.checkpoint(old, None).await?;
                let now = client
                    .checkpoint(size, Some((old, before.checkpoint.root)))
                    .await?;
                Ok(now.consistency)
            }
        })
        .await
        .map_err(|e| Failure::transport(format!("error: witness {url}: {e:#}")))?;
        let mut ok = false;
        for line in lines.lines() {
            let sig = NoteSignature::parse(line)
                .map_err(|e| Failure::verification(format!("witness {url}: {e}")))?;
            if sig.name != *name {
                continue;
            }
            let t = verify_cosignature_v1(&v.checkpoint, &sig, name, key)
                .map_err(|e| Failure::verification(format!("witness {url}: {e}")))?;
            cosigned.push_str(&sig.line());
            witnessed.push(json!({ "witness": name, "url": url, "timestamp": t }));
            ok = true;
        }
        if !ok {
            return Err(Failure::verification(format!(
                "witness {url} returned no cosignature by {name}"
            )));
        }
    }
    emit(
        a.connect.json,
        json!({
            "size": v.checkpoint.size,
            "root": hex::encode(v.checkpoint.root),
            "note": v.note,
            "cosigned_note": cosigned,
            "witnesses": witnessed,
            "vkey": vkey,
        }),
        cosigned.trim_end().to_string(),
    );
    Ok(())
}

async fn verify_cmd(a: VerifyArgs) -> Result<()> {
    let c = &a.connect;
    // The pinned configuration itself: offline from a config file, else
    // fetched and checked against the pinned digest.
    let needs_server = matches!(
        &a.what,
        VerifyWhat::Smt { label: Some(_), .. } | VerifyWhat::Head { online: true, .. }
    );
    let (config, client) = match (offline_config(c)?, needs_server) {
        (Some(cfg), false) => (cfg, None),
        _ => {
            let client = connect(c).await?;
            (client.config().clone(), Some(client))
        }
    };
    match a.what {
        VerifyWhat::Smt { input, label } => {
            let bytes = read_blob(&input)?;
            let smt = SignedMutationTimestamp::decode(&bytes)
                .map_err(|e| Failure::verification(format!("SMT: {e}")))?;
            smt.verify(&config)
                .map_err(|e| Failure::verification(format!("SMT: {e}")))?;
            let m = &smt.smt;
            let mut out = json!({
                "verified": true,
                "kind": "smt",
                "namespace": m.namespace,
                "index": hex::encode(m.index),
                "version": m.version,
                "leaf_hash": hex::encode(m.leaf_hash),
                "shard": m.shard,
                "timestamp_ms": m.timestamp_ms,
                "merge_deadline_ms": m.merge_deadline_ms,
            });
            let mut human = format!(
                "SMT verified (signature, namespace, shard, deadline): version {} of index {}\n  \
                 promised in a signed epoch by {} ms since epoch",
                m.version,
                hex::encode(m.index),
                m.merge_deadline_ms
            );
            if let (Some(label), Some(client)) = (label, &client) {
                // The SMT must be for this label: its index is the label's
                // VRF index (checked with a verified lookup).
                let v = client.lookup(label.as_bytes(), None).await?;
                if v.index != m.index {
                    return Err(Failure::verification(format!(
                        "the SMT is not for {label:?}: it promises index {}, the label's VRF index is {}",
                        hex::encode(m.index),
                        hex::encode(v.index)
                    )));
                }
                let e = wait_merged(client, label.as_bytes(), &smt).await?;
                remember(c, client).await?;
                out["merged_epoch"] = json!(e);
                human.push_str(&format!(
                    "\n  promise kept: {label:?} holds this leaf in signed epoch {e}"
                ));
            }
            emit(c.json, out, human);
        }
        VerifyWhat::Evidence { input } => {
            let bytes = read_blob(&input)?;
            let (kind, epoch) = if let Ok(ev) =
                candor_client::EquivocationEvidence::from_bytes(&bytes)
            {
                ev.verify(&config)
                    .map_err(|e| Failure::verification(format!("equivocation evidence: {e}")))?;
                ("equivocation", ev.epoch())
            } else {
                let ev = candor_client::BrokenPromiseEvidence::from_bytes(&bytes).map_err(|e| {
                    Failure::verification(format!(
                        "neither equivocation nor broken-promise evidence: {e}"
                    ))
                })?;
                ev.verify(&config)
                    .map_err(|e| Failure::verification(format!("broken-promise evidence: {e}")))?;
                ("broken_promise", ev.first_after_deadline.head.epoch)
            };
            let human = match kind {
                "equivocation" => format!(
                    "evidence verified: two different heads signed for epoch {epoch} \
                     (the service equivocated)"
                ),
                _ => format!(
                    "evidence verified: an SMT deadline passed without its version \
                     (the service broke a promise; first head past the deadline: epoch {epoch})"
                ),
            };
            emit(
                c.json,
                json!({ "verified": true, "kind": kind, "epoch": epoch }),
                human,
            );
        }
        VerifyWhat::Head { input, online } => {
            let bytes = read_blob(&input)?;
            let head = SignedHead::decode_verified(&bytes, &config)
                .map_err(|e| Failure::verification(format!("signed head: {e}")))?;
            let mut out = json!({ "verified": true, "kind": "head", "head": head_json(&head) });
            let mut human = format!(
                "signed head verified: epoch {} at {} ms, map root {}",
                head.head.epoch,
                head.head.timestamp_ms,
                hex::encode(head.head.map_root)
            );
            if let (true, Some(client)) = (online, &client) {
                // Same head for that epoch on the server (else equivocation),
                // and consistent with the server's latest head.
                client.observe_head(&head).await?;
                let served = client.head(head.head.epoch).await?;
                if served != head {
                    return Err(Failure::verification(
                        "the server holds a different head for this epoch",
                    ));
                }
                let latest = client.latest_head().await?;
                remember(c, client).await?;
                out["consistent_with_epoch"] = json!(latest.head.epoch);
                human.push_str(&format!(
                    "\n  in the server's log, consistent up to epoch {}",
                    latest.head.epoch
                ));
            }
            emit(c.json, out, human);
        }
    }
    Ok(())
}
