//! Fuzz targets over the running service and its stores, written once and used twice:
//! by the cargo-fuzz binaries under `fuzz/fuzz_targets/` (nightly, libFuzzer) and by
//! the stable replay of the committed corpora, `crates/candor/tests/fuzz_corpus.rs`,
//! which includes this file with `#[path]`. (The decoders of `candor-core` have their
//! own entry point, `candor_core::fuzz`.)
//!
//! Every target must reject bad bytes with an error and never panic; the gRPC target
//! also requires a precise status (never `UNKNOWN`, `INTERNAL` or `DATA_LOSS`) and an
//! answer within a deadline.

#![allow(dead_code)]

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use candor_core::signed::{PublicConfig, SigningKeyPair};
use candor_core::vrf::VrfSecretKey;
use candor_raft::openraft::impls::leader_id_adv::LeaderId;
use candor_raft::{ApplyBatch, CommittedEntry, LogId, StateMachineLogic};
use candor_sequencer::{SequencerCommand, SequencerLogic, SequencerResponse, moved_shards};
use candor_shard::{Item, ShardCommand, ShardLogic, ShardLogicConfig, ShardResponse};
use candor_store::{Direction, KeyRange, MemStore, Space, Store, WriteBatch};
use candor_tree::{EpochLogStore, Forest, OpeningPolicy, TreeConfig};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Every target of this file, as named under `fuzz/fuzz_targets/` and `fuzz/corpus/`.
pub const TARGETS: &[&str] = &[
    "grpc_request",
    "raft_wire",
    "store_record",
    "sequencer_record",
    "shard_snapshot",
    "node_config",
];

/// Runs target `target` on `data`; panics on a finding.
pub fn check(target: &str, data: &[u8]) {
    match target {
        "grpc_request" => grpc_request(data),
        "raft_wire" => candor_raft::fuzz::wire(data),
        "store_record" => store_record(data),
        "sequencer_record" => sequencer_record(data),
        "shard_snapshot" => shard_snapshot(data),
        "node_config" => node_config(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

// ---------------------------------------------------------------------------------
// grpc_request: any bytes as the body of any public method, through the whole server
// (HTTP/2, authentication, limits, protobuf decoding, the handler) of an in-process
// `candor dev`.

/// (path, server streaming) of every method on the public port.
const METHODS: &[(&str, bool)] = &[
    ("/candor.v1.KeyTransparency/Publish", false),
    ("/candor.v1.KeyTransparency/Erase", false),
    ("/candor.v1.KeyTransparency/PublishBatch", false),
    ("/candor.v1.KeyTransparency/Lookup", false),
    ("/candor.v1.KeyTransparency/History", false),
    ("/candor.v1.KeyTransparency/GetConfig", false),
    ("/candor.v1.KeyTransparency/GetEpoch", false),
    ("/candor.v1.KeyTransparency/GetLatestEpoch", false),
    ("/candor.v1.KeyTransparency/WatchEpochs", true),
    ("/candor.v1.KeyTransparency/Consistency", false),
    ("/candor.v1.KeyTransparency/Audit", false),
    ("/candor.v1.KeyTransparency/SubmitCosignature", false),
    ("/candor.v1.KeyTransparency/GetCosignatures", false),
    ("/candor.v1.KeyTransparency/GetCheckpoint", false),
    ("/grpc.health.v1.Health/Check", false),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        true,
    ),
    ("/candor.v1.NoSuchService/Call", false),
];

/// How long one call may take before it counts as a hang.
const CALL_DEADLINE: Duration = Duration::from_secs(20);

struct Service {
    rt: tokio::runtime::Runtime,
    channel: tonic::transport::Channel,
    token: String,
    // Kept for the life of the process (the fuzzer never returns).
    _service: candor_bench::EmbeddedService,
}

/// Set by the panic hook: a panic in a server task (which the runtime would catch)
/// is a finding too.
static PANICKED: AtomicBool = AtomicBool::new(false);

fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            previous(info);
        }));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let service = rt
            .block_on(candor_bench::EmbeddedService::start(
                1,
                Duration::from_millis(200),
            ))
            .expect("start the embedded service");
        let channel = rt
            .block_on(
                tonic::transport::Endpoint::from_shared(service.endpoint.clone())
                    .expect("endpoint")
                    .connect(),
            )
            .expect("connect");
        Service {
            rt,
            channel,
            token: service.token.clone(),
            _service: service,
        }
    })
}

/// Passes message bytes through untouched (the fuzzer writes the protobuf itself).
#[derive(Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Input: byte 0 picks the method, byte 1 bit 0 sends the tenant's token (bit 1 a
/// wrong one), the rest is the request message. The reflection method takes a
/// stream of requests: bits 2-3 of byte 1 split the rest into 1 to 4 messages,
/// so a later message can fail to decode after earlier ones were answered.
fn grpc_request(data: &[u8]) {
    let [m, flags, body @ ..] = data else {
        return;
    };
    let (path, streaming) = METHODS[*m as usize % METHODS.len()];
    let s = service();
    let bidi = path.starts_with("/grpc.reflection.");
    let parts = usize::from((flags >> 2) & 3) + 1;
    let messages: Vec<Bytes> = if bidi {
        body.chunks(body.len().div_ceil(parts).max(1))
            .map(Bytes::copy_from_slice)
            .collect()
    } else {
        vec![Bytes::copy_from_slice(body)]
    };
    let mut request = tonic::Request::new(());
    let token = match (flags & 1, flags & 2) {
        (1, _) => Some(s.token.clone()),
        (0, 2) => Some("not-a-token".to_owned()),
        _ => None,
    };
    if let Some(t) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("ascii token"),
        );
    }
    let mut grpc = tonic::client::Grpc::new(s.channel.clone());
    let name = path;
    let path = http::uri::PathAndQuery::from_static(path);
    let call = async move {
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        if streaming {
            let (metadata, extensions, ()) = request.into_parts();
            let mut stream = if bidi {
                let requests = tokio_stream::iter(messages);
                grpc.streaming(
                    tonic::Request::from_parts(metadata, extensions, requests),
                    path,
                    RawCodec,
                )
                .await?
            } else {
                let message = messages.into_iter().next().unwrap_or_default();
                grpc.server_streaming(
                    tonic::Request::from_parts(metadata, extensions, message),
                    path,
                    RawCodec,
                )
                .await?
            }
            .into_inner();
            // A watch never ends on its own: a few messages are enough.
            for _ in 0..2 {
                match tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
                    Ok(Ok(Some(_))) => {}
                    Ok(Ok(None)) | Err(_) => break,
                    Ok(Err(status)) => return Err(status),
                }
            }
            Ok(())
        } else {
            let (metadata, extensions, ()) = request.into_parts();
            let message = messages.into_iter().next().unwrap_or_default();
            grpc.unary(
                tonic::Request::from_parts(metadata, extensions, message),
                path,
                RawCodec,
            )
            .await
            .map(|_| ())
        }
    };
    let outcome =
        s.rt.block_on(async { tokio::time::timeout(CALL_DEADLINE, call).await });
    assert!(!PANICKED.load(Ordering::SeqCst), "the service panicked");
    if std::env::var_os("CANDOR_FUZZ_VERBOSE").is_some() {
        eprintln!("{name}: {outcome:?}");
    }
    match outcome {
        Err(_) => panic!("{name}: no answer within {CALL_DEADLINE:?}"),
        Ok(Ok(())) => {}
        Ok(Err(status)) => {
            use tonic::Code;
            assert!(
                !matches!(
                    status.code(),
                    Code::Unknown | Code::Internal | Code::DataLoss
                ),
                "{name}: imprecise status {:?}: {}",
                status.code(),
                status.message()
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// store_record: one record of a shard's stored state (tree nodes, revision records,
// leaves, openings, the shard's own records) corrupted on "disk", then the shard is
// reopened, read (lookups, histories, audits) and written (publish, seal).

const SHARD_BITS: u8 = 1;
const SHARD: u32 = 0;
const LABELS: usize = 6;

fn log_id(index: u64) -> LogId {
    LogId {
        leader_id: LeaderId {
            term: 1,
            node_id: 1,
        },
        index,
    }
}

fn tree_config() -> TreeConfig {
    TreeConfig {
        shard_bits: SHARD_BITS,
        ..TreeConfig::default()
    }
}

fn vrf() -> &'static VrfSecretKey {
    static VRF: OnceLock<VrfSecretKey> = OnceLock::new();
    VRF.get_or_init(|| VrfSecretKey::from_bytes(&[7; 32]))
}

/// A label, its VRF index and its VRF proof.
type Label = (Vec<u8>, [u8; 32], candor_core::vrf::VrfProof);

/// A stored record: space, key, value.
type Record = (Space, Vec<u8>, Vec<u8>);

/// The labels of shard `SHARD`, with their VRF index and proof.
fn labels() -> &'static [Label] {
    static LABELS_: OnceLock<Vec<Label>> = OnceLock::new();
    LABELS_.get_or_init(|| {
        (0u32..)
            .map(|i| format!("user-{i}").into_bytes())
            .filter_map(|label| {
                let (out, proof) = vrf().evaluate(&label);
                let index = out.index();
                (candor_core::map::shard_of(&index, SHARD_BITS) == SHARD)
                    .then_some((label, index, proof))
            })
            .take(LABELS)
            .collect()
    })
}

fn apply(logic: &mut ShardLogic, first: u64, cmds: &[ShardCommand]) -> Result<(), String> {
    let data: Vec<Vec<u8>> = cmds.iter().map(ShardCommand::encode).collect();
    for r in apply_entries(logic, first, &data)? {
        ShardResponse::decode(&r).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Applies `data` as the committed entries `first..` of any state machine
/// logic; its responses.
fn apply_entries(
    logic: &mut impl StateMachineLogic,
    first: u64,
    data: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>, String> {
    let entries: Vec<CommittedEntry<'_>> = data
        .iter()
        .enumerate()
        .map(|(i, d)| CommittedEntry {
            log_id: log_id(first + i as u64),
            data: d,
        })
        .collect();
    let last = first + data.len() as u64 - 1;
    let marker = format!("marker-{last}").into_bytes();
    logic
        .apply(ApplyBatch {
            entries: &entries,
            last_log_id: log_id(last),
            marker: &marker,
        })
        .map_err(|e| e.to_string())
}

fn publish(round: u8, timestamp_ms: u64) -> ShardCommand {
    ShardCommand::Publish {
        timestamp_ms,
        items: labels()
            .iter()
            .enumerate()
            .filter(|(i, _)| (*i + round as usize).is_multiple_of(2) || round == 0)
            .map(|(i, (label, index, _))| Item {
                tenant: "t".into(),
                idempotency_key: Some(format!("k-{round}-{i}")),
                label: label.clone(),
                index: *index,
                value: vec![round; 40 + i],
                nonce: [round ^ i as u8; 32],
            })
            .collect(),
    }
}

/// Shard `SHARD` on a fresh in-memory store after applying `log` from index 1.
fn shard_after(log: &[ShardCommand]) -> (Arc<dyn Store>, Forest, ShardLogic) {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let forest = Forest::open(Arc::clone(&store), tree_config()).expect("forest");
    let mut logic = ShardLogic::open(&forest, SHARD, ShardLogicConfig::default()).expect("logic");
    apply(&mut logic, 1, log).expect("apply the log");
    (store, forest, logic)
}

/// Every (space, key, value) of a small shard: three sealed revisions, one pending
/// publish, idempotency records.
fn template() -> &'static [Record] {
    static TEMPLATE: OnceLock<Vec<Record>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let (store, _, _) = shard_after(&[
            publish(0, 1000),
            ShardCommand::Seal,
            publish(1, 2000),
            ShardCommand::Seal,
            publish(2, 3000),
            ShardCommand::Seal,
            publish(3, 4000),
        ]);
        dump(&*store)
    })
}

fn dump(store: &dyn Store) -> Vec<Record> {
    let mut out = Vec::new();
    for space in [
        Space::Meta,
        Space::Tree,
        Space::Values,
        Space::EpochLog,
        Space::RaftLog,
    ] {
        for (k, v) in store
            .scan(space, &KeyRange::all(), Direction::Forward, usize::MAX)
            .expect("scan")
        {
            out.push((space, k, v));
        }
    }
    out
}

/// Input: byte 0 picks the record, byte 1 how it is damaged (replaced by the rest,
/// truncated, one byte flipped, deleted), the rest is the replacement or position.
fn store_record(data: &[u8]) {
    let Some(store) = damaged(template(), None, data) else {
        return;
    };
    // Whatever was damaged, each step fails cleanly or works.
    let Ok(forest) = Forest::open(Arc::clone(&store), tree_config()) else {
        return;
    };
    read_everything(&forest);
    let Ok(mut logic) = ShardLogic::open(&forest, SHARD, ShardLogicConfig::default()) else {
        return;
    };
    let _ = apply(
        &mut logic,
        8,
        &[ShardCommand::Seal, publish(4, 5000), ShardCommand::Seal],
    );
    read_everything(&forest);
}

/// A store holding `records` with one of them damaged as `data` says (see
/// [`store_record`]); `among`, if given, the indexes of the records that may be
/// picked. `None` for an input too short.
fn damaged(records: &[Record], among: Option<&[usize]>, data: &[u8]) -> Option<Arc<dyn Store>> {
    let [which, how, rest @ ..] = data else {
        return None;
    };
    let target = match among {
        Some(a) if !a.is_empty() => a[*which as usize % a.len()],
        _ => *which as usize % records.len(),
    };
    let mut batch = WriteBatch::default();
    for (i, (space, k, v)) in records.iter().enumerate() {
        if i != target {
            batch.put(*space, k.clone(), v.clone());
            continue;
        }
        let damaged = match how % 4 {
            0 => Some(rest.to_vec()),
            1 => Some(v[..rest.first().map_or(0, |&n| n as usize).min(v.len())].to_vec()),
            2 => {
                let mut v = v.clone();
                if let (Some(&at), Some(&x)) = (rest.first(), rest.get(1))
                    && !v.is_empty()
                {
                    let at = at as usize % v.len();
                    v[at] ^= x.max(1);
                }
                Some(v)
            }
            _ => None,
        };
        if let Some(d) = damaged {
            batch.put(*space, k.clone(), d);
        }
    }
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    store
        .write(&batch, candor_store::Durability::Sync)
        .expect("write the damaged store");
    Some(store)
}

// ---------------------------------------------------------------------------------
// sequencer_record: one record of the sequencer's stored state or of the epoch log
// (signed heads, the log's tree, each epoch's shard revisions, the sequencer's state
// and marker) damaged on "disk"; then the epoch log and the sequencer are reopened,
// every head and proof read, and one more epoch applied.

fn seq_key() -> &'static Arc<SigningKeyPair> {
    static KEY: OnceLock<Arc<SigningKeyPair>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(SigningKeyPair::from_seed(&[5; 32])))
}

fn seq_public() -> PublicConfig {
    PublicConfig {
        namespace: "fuzz.candor".into(),
        vrf_key: vrf().public_key(),
        head_key: seq_key().public_key(),
        smt_key: SigningKeyPair::from_seed(&[6; 32]).public_key(),
        shard_bits: SHARD_BITS,
        epoch_interval_ms: 1000,
        max_merge_delay_ms: 10_000,
    }
}

fn seq_apply(seq: &mut SequencerLogic, index: u64, cmd: &SequencerCommand) -> Result<(), String> {
    for r in apply_entries(seq, index, &[cmd.encode()])? {
        SequencerResponse::decode(&r).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Applies the next epoch (the shards that moved since the last) at `index`.
fn next_epoch(
    seq: &mut SequencerLogic,
    forest: &Forest,
    index: u64,
    ts: u64,
) -> Result<(), String> {
    let shards = moved_shards(forest, seq.revisions()).map_err(|e| e.to_string())?;
    seq_apply(
        seq,
        index,
        &SequencerCommand::Epoch {
            timestamp_ms: ts,
            shards,
        },
    )
}

/// Every record of a store holding a shard and the sequencer after three epochs
/// (two with a moved shard), and the indexes of those the shard alone would not
/// have written: the sequencer's and the epoch log's.
fn sequencer_template() -> &'static (Vec<Record>, Vec<usize>) {
    static TEMPLATE: OnceLock<(Vec<Record>, Vec<usize>)> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let shard_history = || {
            let (store, forest, mut shard) = shard_after(&[publish(0, 1000), ShardCommand::Seal]);
            let more = move || {
                apply(&mut shard, 3, &[publish(1, 2000), ShardCommand::Seal]).expect("shard")
            };
            (store, forest, more)
        };
        let (store, forest, mut more) = shard_history();
        let epochs = Arc::new(EpochLogStore::open(Arc::clone(&store)).expect("epoch log"));
        let mut seq = SequencerLogic::open(
            Arc::clone(&store),
            epochs,
            seq_public(),
            Arc::clone(seq_key()),
        )
        .expect("sequencer");
        next_epoch(&mut seq, &forest, 1, 1500).expect("epoch 1");
        more();
        next_epoch(&mut seq, &forest, 2, 2500).expect("epoch 2");
        next_epoch(&mut seq, &forest, 3, 3500).expect("epoch 3");
        let all = dump(&*store);
        // The same shard history without the sequencer.
        let (alone, _, mut more) = shard_history();
        more();
        let alone = dump(&*alone);
        let owned = (0..all.len())
            .filter(|i| !alone.contains(&all[*i]))
            .collect();
        (all, owned)
    })
}

fn sequencer_record(data: &[u8]) {
    let (records, owned) = sequencer_template();
    let Some(store) = damaged(records, Some(owned), data) else {
        return;
    };
    // Whatever was damaged, each step fails cleanly or works.
    let Ok(forest) = Forest::open(Arc::clone(&store), tree_config()) else {
        return;
    };
    let Ok(epochs) = EpochLogStore::open(Arc::clone(&store)) else {
        return;
    };
    let epochs = Arc::new(epochs);
    let read_log = |epochs: &EpochLogStore| {
        let latest = epochs.latest_epoch().min(6);
        let _ = epochs.latest();
        let _ = epochs.configs();
        for e in 0..=latest + 1 {
            let _ = epochs.head(e);
            let _ = epochs.revisions(e);
            let _ = epochs.cosignatures(e);
            let _ = epochs.checkpoint(e);
            if let Ok(v) = epochs.view(&forest, e) {
                let _ = v.root_hash();
                for (_, index, proof) in labels() {
                    let _ = v.lookup_proof(index, *proof, OpeningPolicy::Open);
                }
            }
            for f in 0..=e {
                let _ = epochs.consistency_proof(f, e);
                let _ = epochs.inclusion_proof(f, e);
            }
        }
    };
    read_log(&epochs);
    let Ok(mut seq) = SequencerLogic::open(
        Arc::clone(&store),
        Arc::clone(&epochs),
        seq_public(),
        Arc::clone(seq_key()),
    ) else {
        return;
    };
    let _ = seq.state();
    let _ = next_epoch(&mut seq, &forest, 4, 4500);
    read_log(&epochs);
}

fn read_everything(forest: &Forest) {
    let Ok(tree) = forest.shard(SHARD) else {
        return;
    };
    let latest = tree.latest_revision();
    let mut views = Vec::new();
    for rev in latest.saturating_sub(3)..=latest {
        if let Ok(v) = forest.view(vec![rev, 0]) {
            views.push(v);
        }
    }
    for view in &views {
        for (_, index, proof) in labels() {
            let _ = view.lookup_proof(index, *proof, OpeningPolicy::Open);
            let _ = view.history_proof(index, *proof);
            let _ = view.history_page(index, *proof, 0, 4, 1 << 16);
            let _ = view.leaf(index);
        }
    }
    for pair in views.windows(2) {
        let _ = pair[1].changes_since(&pair[0]);
        let _ = pair[1].audit_proof(&pair[0]);
    }
}

// ---------------------------------------------------------------------------------
// shard_snapshot: any bytes installed as a shard snapshot (what a follower receives
// from a leader, chunk by chunk), over a shard that holds state; a refused snapshot
// leaves a readable shard.

fn shard_snapshot(data: &[u8]) {
    // Half the inputs start from a real snapshot, damaged, to get past the header.
    let bytes: Vec<u8> = match data.split_first() {
        Some((&mode, rest)) if mode & 1 == 1 => {
            let mut real = real_snapshot().to_vec();
            for pair in rest.chunks(3) {
                if let [a, b, x] = pair {
                    let at = (usize::from(*a) << 8 | usize::from(*b)) % real.len().max(1);
                    if let Some(byte) = real.get_mut(at) {
                        *byte ^= x;
                    }
                }
            }
            if mode & 2 == 2 && !rest.is_empty() {
                real.truncate(usize::from(rest[0]) * real.len() / 256);
            }
            real
        }
        Some((_, rest)) => rest.to_vec(),
        None => return,
    };
    let (_, forest, mut logic) = shard_after(&[publish(0, 1000), ShardCommand::Seal]);
    let mut reader: &[u8] = &bytes;
    let _ = logic.restore(&mut reader as &mut dyn Read, b"marker-snapshot");
    read_everything(&forest);
    let _ = apply(&mut logic, 100, &[publish(5, 9000), ShardCommand::Seal]);
    read_everything(&forest);
}

fn real_snapshot() -> &'static [u8] {
    static SNAP: OnceLock<Vec<u8>> = OnceLock::new();
    SNAP.get_or_init(|| {
        let (_, _, logic) = shard_after(&[
            publish(0, 1000),
            ShardCommand::Seal,
            publish(1, 2000),
            ShardCommand::Seal,
            publish(2, 3000),
        ]);
        let mut out = Vec::new();
        logic
            .snapshot()
            .expect("snapshot")
            .read_to_end(&mut out)
            .expect("read snapshot");
        out
    })
}

// ---------------------------------------------------------------------------------
// node_config: any text as the configuration file, through the same layering and
// start-up validation as `candor serve --config`.

fn node_config(data: &[u8]) {
    use figment::Figment;
    use figment::providers::{Format, Serialized, Toml};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let fig = Figment::from(Serialized::defaults(candor_node::config::Config::default()))
        .merge(Toml::string(text));
    let Ok(config) = fig.extract::<candor_node::config::Config>() else {
        return;
    };
    if config.validate().is_err() {
        return;
    }
    let _ = config.placement();
    let _ = config.member_sets();
    let _ = config.check_plaintext_api();
    for role in [
        None,
        Some(candor_node::config::MemberRole::All),
        Some(candor_node::config::MemberRole::Shard),
        Some(candor_node::config::MemberRole::Sequencer),
    ] {
        let _ = config.check_role(role);
    }
}
