//! openraft's own storage conformance suite against `GroupLogStore` + `StateMachine`.

use std::sync::Arc;

use candor_raft::openraft::StorageError;
use candor_raft::openraft::entry::RaftEntry;
use candor_raft::openraft::impls::leader_id_adv::LeaderId;
use candor_raft::openraft::storage::{IOFlushed, RaftLogStorage};
use candor_raft::openraft::testing::log::{StoreBuilder, Suite};
use candor_raft::testing::AppendLog;
use candor_raft::{
    CrashStore, Entry, GroupId, GroupLogStore, LogDb, LogId, StateMachine, TypeConfig, Vote,
};
use candor_store::Store;

struct Builder;

impl StoreBuilder<TypeConfig, GroupLogStore, StateMachine<AppendLog>, ()> for Builder {
    async fn build(
        &self,
    ) -> Result<((), GroupLogStore, StateMachine<AppendLog>), StorageError<TypeConfig>> {
        let kv: Arc<dyn Store> = Arc::new(CrashStore::new());
        let db = LogDb::open(Arc::clone(&kv), b"raft/").expect("open log db");
        // Neighbouring groups in the same store must not leak into this one.
        for g in [6, 8] {
            let mut noise = db.group(GroupId(g));
            let entries: Vec<Entry> = (0..20)
                .map(|i| {
                    let leader_id = LeaderId {
                        term: 9,
                        node_id: 3,
                    };
                    Entry::new_blank(LogId {
                        leader_id,
                        index: i,
                    })
                })
                .collect();
            noise
                .append(entries, IOFlushed::noop())
                .await
                .expect("noise append");
            let vote = Vote::new_committed(9, 3);
            noise.save_vote(&vote).await.expect("noise vote");
        }
        let store = db.group(GroupId(7));
        let logic = AppendLog::open(kv, b"sm/").expect("open logic");
        let sm = StateMachine::new(logic, store.clone()).expect("state machine");
        Ok(((), store, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(Builder).await.expect("storage suite");
}
