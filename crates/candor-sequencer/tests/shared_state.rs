//! Shared-state mode: several sequencer replicas apply the same committed entries to
//! one store (as FoundationDB is shared), in random interleavings, with restarts and
//! index-only snapshot installs, and concurrently on threads. The shared store must end
//! exactly as a single replica's own store would: the same epoch log, byte for byte,
//! and the same bookkeeping; every epoch gets exactly one head.
//! Seeded (`CANDOR_TEST_SEED`, printed; `CANDOR_TEST_CASES` for more cases).

mod common;
use common::{key, log_id, public, seed};

use std::sync::Arc;

use candor_raft::{ApplyBatch, CommittedEntry, StateMachineLogic};
use candor_sequencer::{SequencerCommand, SequencerLogic, SequencerResponse, ShardRoot};
use candor_store::{Direction, KeyRange, MemStore, Space, Store, scan_pages};
use candor_tree::EpochLogStore;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const BITS: u8 = 2;

fn cases(default: u64) -> u64 {
    std::env::var("CANDOR_TEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A random committed log: epochs moving random shards forward (sometimes with stale
/// revisions, as an old leader's proposal), timestamps that sometimes go back, and the
/// odd malformed entry.
fn random_log(rng: &mut StdRng, n: usize) -> Vec<Vec<u8>> {
    let shards = 1usize << BITS;
    let mut revs = vec![0u64; shards];
    let mut ts = 1_000u64;
    (0..n)
        .map(|_| {
            if rng.random_range(0..20) == 0 {
                return vec![0xff, 0xfe, 0x01];
            }
            ts = if rng.random_range(0..5) == 0 {
                ts.saturating_sub(rng.random_range(0..500))
            } else {
                ts + rng.random_range(0..1_000)
            };
            let mut moved = Vec::new();
            for (s, r) in revs.iter_mut().enumerate() {
                match rng.random_range(0..4) {
                    0 => {
                        *r += rng.random_range(1..4);
                        moved.push(ShardRoot {
                            shard: s as u32,
                            revision: *r,
                            root: [(*r as u8) ^ (s as u8); 32],
                            leaves: *r * 3,
                        });
                    }
                    1 if *r > 1 => moved.push(ShardRoot {
                        shard: s as u32,
                        revision: *r - 1,
                        root: [0xaa; 32],
                        leaves: 1,
                    }),
                    _ => {}
                }
            }
            SequencerCommand::Epoch {
                timestamp_ms: ts,
                shards: moved,
            }
            .encode()
        })
        .collect()
}

fn apply(logic: &mut SequencerLogic, log: &[Vec<u8>], from: u64, to: u64) -> Vec<Vec<u8>> {
    let entries: Vec<CommittedEntry<'_>> = (from..=to)
        .map(|i| CommittedEntry {
            log_id: log_id(i),
            data: &log[(i - 1) as usize],
        })
        .collect();
    let marker = format!("marker-{to}").into_bytes();
    logic
        .apply(ApplyBatch {
            entries: &entries,
            last_log_id: log_id(to),
            marker: &marker,
        })
        .expect("apply")
}

fn open_single(store: &Arc<dyn Store>) -> SequencerLogic {
    let epochs = Arc::new(EpochLogStore::open(Arc::clone(store)).unwrap());
    SequencerLogic::open(Arc::clone(store), epochs, public(BITS), key()).unwrap()
}

fn open_shared(store: &Arc<dyn Store>, replica: u64) -> SequencerLogic {
    let epochs = Arc::new(EpochLogStore::open(Arc::clone(store)).unwrap());
    SequencerLogic::open_shared(Arc::clone(store), epochs, public(BITS), key(), replica).unwrap()
}

/// Every record of the sequencer and its epoch log, without Raft markers (per replica).
fn state_of(store: &dyn Store) -> Records {
    let mut out = Vec::new();
    for (space, range) in [
        (Space::EpochLog, KeyRange::all()),
        (Space::Meta, KeyRange::prefix(b"candor-seq/")),
    ] {
        for kv in scan_pages(store, space, range, Direction::Forward, 256) {
            let (k, v) = kv.unwrap();
            if space == Space::Meta && k.starts_with(b"candor-seq/m") {
                continue;
            }
            out.push((space, k, v));
        }
    }
    out
}

/// What a single replica with its own store makes of `log`.
type Records = Vec<(Space, Vec<u8>, Vec<u8>)>;

fn reference(log: &[Vec<u8>]) -> (Vec<SequencerResponse>, Records) {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let mut l = open_single(&store);
    let n = log.len() as u64;
    let resp = apply(&mut l, log, 1, n)
        .iter()
        .map(|r| SequencerResponse::decode(r).unwrap())
        .collect();
    (resp, state_of(&*store))
}

fn check_response(case: u64, i: u64, got: &[u8], want: &SequencerResponse) {
    let got = SequencerResponse::decode(got).unwrap();
    // A replica that finds an entry applied by another answers `AlreadyApplied`; the
    // leader's client then reads the state (see `propose_epoch`).
    assert!(
        got == *want || got == SequencerResponse::AlreadyApplied,
        "case {case}: entry {i}: {got:?}, single replica: {want:?}"
    );
}

#[test]
fn replicas_interleaved_end_as_one() {
    let base = seed(0x5e9_5a4e);
    for case in 0..cases(48) {
        let mut rng = StdRng::seed_from_u64(base.wrapping_add(case));
        let n = rng.random_range(1..40usize);
        let log = random_log(&mut rng, n);
        let (want_resp, want_state) = reference(&log);
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let replicas = rng.random_range(2..4u64);
        let mut logics: Vec<SequencerLogic> =
            (1..=replicas).map(|r| open_shared(&store, r)).collect();
        let mut pos = vec![0u64; replicas as usize];
        let mut first_answer = vec![None::<SequencerResponse>; n];
        while pos.iter().any(|p| *p < n as u64) {
            let r = rng.random_range(0..replicas as usize);
            match rng.random_range(0..10) {
                // Restart: a new logic over the same store, at its stored marker.
                0 => {
                    logics[r] = open_shared(&store, r as u64 + 1);
                    let m = logics[r].applied_marker().unwrap();
                    pos[r] = m.map_or(0, |m| {
                        String::from_utf8(m)
                            .unwrap()
                            .trim_start_matches("marker-")
                            .parse()
                            .unwrap()
                    });
                }
                // Index-only snapshot of another replica, installed into this one.
                1 => {
                    let from = rng.random_range(0..replicas as usize);
                    if from != r && pos[from] > pos[r] {
                        let mut snap = logics[from].snapshot().unwrap();
                        let at = pos[from];
                        logics[r]
                            .restore(&mut snap, format!("marker-{at}").as_bytes())
                            .unwrap();
                        pos[r] = at;
                    }
                }
                _ => {
                    if pos[r] < n as u64 {
                        let to = (pos[r] + rng.random_range(1..4)).min(n as u64);
                        let out = apply(&mut logics[r], &log, pos[r] + 1, to);
                        for (k, o) in out.iter().enumerate() {
                            let i = pos[r] + 1 + k as u64;
                            let want = &want_resp[(i - 1) as usize];
                            check_response(case, i, o, want);
                            let got = SequencerResponse::decode(o).unwrap();
                            if got != SequencerResponse::AlreadyApplied
                                && first_answer[(i - 1) as usize].is_none()
                            {
                                first_answer[(i - 1) as usize] = Some(got);
                            }
                        }
                        pos[r] = to;
                    }
                }
            }
        }
        assert_eq!(
            state_of(&*store),
            want_state,
            "case {case}: the shared store differs from a single replica's"
        );
        for l in &logics {
            assert_eq!(l.state().applied_index, n as u64, "case {case}");
        }
        // Every entry was applied for real by exactly the first replica to reach it.
        for (i, a) in first_answer.iter().enumerate() {
            if let Some(a) = a {
                assert_eq!(a, &want_resp[i], "case {case}: entry {}", i + 1);
            }
        }
    }
}

/// Three replicas apply the whole log at the same time, on three threads, in random
/// batch sizes: the compare-and-sets leave one result, the single replica's.
#[test]
fn replicas_concurrent_end_as_one() {
    let base = seed(0xc0_c0a);
    for case in 0..cases(16) {
        let mut rng = StdRng::seed_from_u64(base.wrapping_add(case));
        let n = rng.random_range(10..60usize);
        let log = Arc::new(random_log(&mut rng, n));
        let (want_resp, want_state) = reference(&log);
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let threads: Vec<_> = (1..=3u64)
            .map(|r| {
                let (store, log, want) = (Arc::clone(&store), Arc::clone(&log), want_resp.clone());
                let mut rng = StdRng::seed_from_u64(base ^ (case << 8) ^ r);
                std::thread::spawn(move || {
                    let mut l = open_shared(&store, r);
                    let mut pos = 0u64;
                    while pos < n as u64 {
                        let to = (pos + rng.random_range(1..5)).min(n as u64);
                        let out = apply(&mut l, &log, pos + 1, to);
                        for (k, o) in out.iter().enumerate() {
                            let i = pos + 1 + k as u64;
                            check_response(case, i, o, &want[(i - 1) as usize]);
                        }
                        pos = to;
                    }
                    l.state()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().applied_index, n as u64);
        }
        assert_eq!(
            state_of(&*store),
            want_state,
            "case {case}: the shared store differs from a single replica's"
        );
    }
}
