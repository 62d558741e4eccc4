//! The shared backend conformance suite (`candor_store::conformance::run_conformance`, the
//! same function the embedded backend's tests call) against a real FoundationDB cluster.
//!
//! Runs only when `CANDOR_FDB_CLUSTER_FILE` names a cluster file *and* the crate is built
//! with `--features fdb` (which needs libclang to build and libfdb_c 7.3+ to link):
//!
//! ```text
//! CANDOR_FDB_CLUSTER_FILE=/etc/foundationdb/fdb.cluster \
//!     cargo test -p candor-store-fdb --features fdb -- --nocapture
//! ```
//!
//! Otherwise each test prints a loud `SKIPPED` line to stderr and passes. Every store lives
//! under a fresh namespace `("candor", "conformance-<pid>-<time>-<n>")`, cleared before
//! use and after the run.

use std::io::Write;
use std::path::PathBuf;

use candor_store_fdb::CLUSTER_FILE_ENV;

/// Writes straight to the process's stderr: libtest captures `eprintln!` of passing tests,
/// and a skipped suite must be visible in a plain `cargo test` run.
fn loud(msg: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\n*** {msg} ***\n");
}

/// The cluster file to test against, or `None` after printing why the suite is skipped.
fn cluster_file(test: &str) -> Option<PathBuf> {
    let Some(path) = std::env::var_os(CLUSTER_FILE_ENV).filter(|p| !p.is_empty()) else {
        loud(&format!(
            "SKIPPED: FoundationDB conformance suite ({test}): set \
             {CLUSTER_FILE_ENV}=/etc/foundationdb/fdb.cluster to run against a real cluster \
             (and build with --features fdb)"
        ));
        return None;
    };
    if cfg!(not(feature = "fdb")) {
        loud(&format!(
            "SKIPPED: FoundationDB conformance suite ({test}): {CLUSTER_FILE_ENV} is set but \
             this test was built without the `fdb` feature; run \
             cargo test -p candor-store-fdb --features fdb (needs libclang and libfdb_c 7.3+)"
        ));
        return None;
    }
    Some(PathBuf::from(path))
}

#[test]
fn fdb_store_conforms() {
    let Some(cluster) = cluster_file("fdb_store_conforms") else {
        return;
    };
    #[cfg(feature = "fdb")]
    candor_store::conformance::run_conformance(fdb::FdbFactory::new(cluster));
    #[cfg(not(feature = "fdb"))]
    let _ = cluster;
}

#[test]
fn fdb_specific_behaviour() {
    let Some(cluster) = cluster_file("fdb_specific_behaviour") else {
        return;
    };
    #[cfg(feature = "fdb")]
    fdb::specific(cluster);
    #[cfg(not(feature = "fdb"))]
    let _ = cluster;
}

#[cfg(feature = "fdb")]
mod fdb {
    use std::path::PathBuf;
    use std::time::{SystemTime, UNIX_EPOCH};

    use candor_store::conformance::StoreFactory;
    use candor_store::{
        Direction, Durability, KeyRange, ReadView, Space, Store, StoreError, WriteBatch,
    };
    use candor_store_fdb::{FdbConfig, FdbStore, FdbStoreError};

    /// Fresh namespaces per store; "reopen" opens the last one again.
    pub struct FdbFactory {
        cluster: PathBuf,
        run: String,
        configs: Vec<FdbConfig>,
    }

    impl FdbFactory {
        pub fn new(cluster: PathBuf) -> Self {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            FdbFactory {
                cluster,
                run: format!("{}-{nanos}", std::process::id()),
                configs: Vec::new(),
            }
        }

        pub fn config(&mut self) -> FdbConfig {
            let ns = format!("conformance-{}-{}", self.run, self.configs.len());
            let config = FdbConfig::new(Some(self.cluster.clone()), &ns);
            self.configs.push(config.clone());
            config
        }
    }

    impl StoreFactory for FdbFactory {
        type Store = FdbStore;

        fn create(&mut self) -> FdbStore {
            let s = FdbStore::open_with(self.config()).expect("open FoundationDB store");
            s.clear_all().expect("clear namespace");
            s
        }

        fn reopen(&mut self) -> FdbStore {
            let config = self.configs.last().cloned().expect("reopen before create");
            FdbStore::open_with(config).expect("reopen FoundationDB store")
        }
    }

    impl Drop for FdbFactory {
        fn drop(&mut self) {
            for c in &self.configs {
                if let Ok(s) = FdbStore::open_with(c.clone()) {
                    let _ = s.clear_all();
                }
            }
        }
    }

    /// Behaviour beyond the shared suite: two handles, limits, markers, clear_all.
    pub fn specific(cluster: PathBuf) {
        let mut f = FdbFactory::new(cluster);
        let config = f.config();
        let a = FdbStore::open_with(config.clone()).unwrap();
        let b = FdbStore::open_with(config).unwrap();
        // Two handles on one namespace see each other's writes at once.
        let mut batch = WriteBatch::new();
        batch.put(Space::Meta, b"k", b"v");
        a.write(&batch, Durability::Buffered).unwrap();
        assert_eq!(b.get(Space::Meta, b"k").unwrap(), Some(b"v".to_vec()));
        // Limits leave room for the prefix and FoundationDB's byte accounting.
        let l = a.limits();
        assert!(l.max_key_bytes + a.keyspace().space_prefix(Space::Tree).len() < 10_000);
        assert!(l.max_batch_bytes < 8_000_000);
        // Commit markers and the format marker live outside every space.
        for s in Space::ALL {
            let n = a
                .scan(s, &KeyRange::all(), Direction::Forward, 100)
                .unwrap()
                .len();
            assert_eq!(n, usize::from(s == Space::Meta), "{s:?}");
        }
        assert!(a.disk_space_bytes().unwrap() > 0);
        // clear_all empties the namespace for every handle.
        a.clear_all().unwrap();
        assert_eq!(b.get(Space::Meta, b"k").unwrap(), None);
        // Our errors keep their meaning through the trait's error type.
        let e: StoreError = FdbStoreError::Format {
            root: "r".into(),
            found: "x".into(),
            expected: "y".into(),
        }
        .into();
        assert!(matches!(e, StoreError::Corruption(_)));
    }
}
