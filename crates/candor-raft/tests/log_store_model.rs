//! Property test: the Raft log store behaves like a simple model under random appends,
//! truncations, purges and crashes, with neighbouring groups writing to the same store.

use std::sync::Arc;

use candor_raft::openraft::entry::RaftEntry;
use candor_raft::openraft::impls::leader_id_adv::LeaderId;
use candor_raft::openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use candor_raft::openraft::type_config::TypeConfigExt;
use candor_raft::{
    CrashStore, Entry, GroupId, GroupLogStore, LogDb, LogId, Request, TypeConfig, Vote,
};
use candor_store::Store;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Append `n` entries; `new_term` starts a new term first.
    Append { n: u64, new_term: bool, size: usize },
    /// Keep entries up to `back` before the last one.
    Truncate { back: u64 },
    /// Purge up to `fwd` entries after the first present one.
    Purge { fwd: u64 },
    /// Sync (through a vote), power-cut, reopen.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..12, any::<bool>(), 0usize..300)
            .prop_map(|(n, new_term, size)| Op::Append { n, new_term, size }),
        1 => (0u64..6).prop_map(|back| Op::Truncate { back }),
        1 => (0u64..6).prop_map(|fwd| Op::Purge { fwd }),
        1 => Just(Op::Crash),
    ]
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId {
        leader_id: LeaderId { term, node_id: 1 },
        index,
    }
}

struct Model {
    purged: Option<LogId>,
    entries: Vec<Entry>,
    term: u64,
}

impl Model {
    fn last(&self) -> Option<LogId> {
        self.entries.last().map(|e| e.log_id()).or(self.purged)
    }
    fn next_index(&self) -> u64 {
        self.last().map_or(0, |l| l.index + 1)
    }
}

async fn append(store: &mut GroupLogStore, entries: Vec<Entry>) {
    let (tx, rx) = TypeConfig::oneshot();
    store
        .append(entries, IOFlushed::signal(tx))
        .await
        .expect("append");
    rx.await.expect("callback").expect("flushed");
}

async fn check(store: &mut GroupLogStore, model: &Model) -> Result<(), TestCaseError> {
    let got = store.try_get_log_entries(..).await.expect("read all");
    prop_assert_eq!(&got, &model.entries);
    let st = store.get_log_state().await.expect("state");
    prop_assert_eq!(st.last_purged_log_id, model.purged);
    prop_assert_eq!(st.last_log_id, model.last());
    if let (Some(first), Some(last)) = (model.entries.first(), model.entries.last()) {
        let mid = (first.index() + last.index()) / 2;
        let part = store
            .try_get_log_entries(mid..=last.index())
            .await
            .expect("read part");
        let want: Vec<Entry> = model
            .entries
            .iter()
            .filter(|e| e.index() >= mid)
            .cloned()
            .collect();
        prop_assert_eq!(part, want);
    }
    Ok(())
}

fn open(kv: &Arc<CrashStore>) -> (LogDb, GroupLogStore, GroupLogStore) {
    let dynkv: Arc<dyn Store> = Arc::clone(kv) as Arc<dyn Store>;
    let db = LogDb::open(dynkv, b"raft/").expect("open");
    let store = db.group(GroupId(5));
    let neighbour = db.group(GroupId(6));
    (db, store, neighbour)
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut kv = Arc::new(CrashStore::new());
    let (_db, mut store, mut neighbour) = open(&kv);
    let mut model = Model {
        purged: None,
        entries: Vec::new(),
        term: 1,
    };
    let mut seq = 0u64;
    for op in ops {
        match op {
            Op::Append { n, new_term, size } => {
                if new_term {
                    model.term += 1;
                }
                let start = model.next_index();
                let batch: Vec<Entry> = (start..start + n)
                    .map(|i| {
                        seq += 1;
                        let mut data = vec![0xA5; size];
                        data.extend_from_slice(&seq.to_be_bytes());
                        Entry::new_normal(log_id(model.term, i), Request(data))
                    })
                    .collect();
                model.entries.extend(batch.iter().cloned());
                append(&mut store, batch).await;
                // The neighbour's log moves too, at unrelated indexes.
                let ni = seq * 3;
                append(&mut neighbour, vec![Entry::new_blank(log_id(9, ni))]).await;
            }
            Op::Truncate { back } => {
                let Some(last) = model.entries.last().map(|e| e.index()) else {
                    continue;
                };
                let keep = last.saturating_sub(back);
                let target = model
                    .entries
                    .iter()
                    .find(|e| e.index() == keep)
                    .map(|e| e.log_id())
                    .or(model.purged);
                store.truncate_after(target).await.expect("truncate");
                let cut = target.map_or(0, |t| t.index + 1);
                model.entries.retain(|e| e.index() < cut);
            }
            Op::Purge { fwd } => {
                let Some(first) = model.entries.first().map(|e| e.index()) else {
                    continue;
                };
                let upto = model
                    .entries
                    .iter()
                    .rfind(|e| e.index() <= first + fwd)
                    .map(|e| e.log_id())
                    .expect("first entry exists");
                store.purge(upto).await.expect("purge");
                model.entries.retain(|e| e.index() > upto.index);
                model.purged = Some(upto);
            }
            Op::Crash => {
                // save_vote syncs everything before it, truncations and purges included.
                store
                    .save_vote(&Vote::new_committed(model.term, 1))
                    .await
                    .expect("vote");
                let crashed = Arc::new(kv.crash_copy().expect("crash copy"));
                kv = crashed;
                let (_db2, s, n) = open(&kv);
                store = s;
                neighbour = n;
                let vote = store.read_vote().await.expect("read vote");
                prop_assert_eq!(vote, Some(Vote::new_committed(model.term, 1)));
            }
        }
        check(&mut store, &model).await?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn log_store_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run(ops))?;
    }
}
