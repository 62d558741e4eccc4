//! Reading a shared store directly: the API role of a FoundationDB deployment.
//!
//! With shared state, every tree node and every epoch is in the one store, so a
//! process that holds no Raft group can serve every read: [`StoreReader`] opens the
//! trees and the epoch log over the store and follows the log's end. Its
//! [`StoreReader::heads`] watch moves to a new signed head once
//!
//! 1. the epoch log's end in the store moved ([`EpochLogStore::reload`], which checks
//!    the stored log up to the new end before adopting it, and never moves back), and
//! 2. every shard revision that epoch covers is visible in the trees (a seal is
//!    written before the sequencer can name it, so this holds at once in practice; the
//!    check guards against a store read from a lagging replica of the backend).
//!
//! The reader polls: the store has no change feed that is cheap on both backends
//! (FoundationDB watches would do, but one watch per reader is not worth the
//! complexity at one read per poll). The poll interval is a quarter of the epoch
//! interval, clamped to 20–250 ms, so a new epoch is served well within one interval.
//! A sequencer member also wakes the poll when its own replica applied an epoch.
//!
//! The reader never writes: it does not record the deployment's identity in an empty
//! store (the members do); it refuses a store that belongs to another namespace or
//! shard count.

use std::sync::Arc;
use std::time::Duration;

use candor_core::signed::{PublicConfig, SignedHead};
use candor_sim::watch;
use candor_store::{Durability, Space, Store};
use candor_tree::{EpochLogStore, Forest, TreeConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{NodeError, PUBLIC_CONFIG_KEY, check_identity, readable_now};

/// How often a reader looks for a new epoch: a quarter of the epoch interval, within
/// 20–250 ms.
pub fn poll_interval(epoch_interval: Duration) -> Duration {
    (epoch_interval / 4).clamp(Duration::from_millis(20), Duration::from_millis(250))
}

/// Follow the epoch log in the store: the returned watch carries the latest signed head
/// whose revisions the trees hold. `wake` (a sequencer replica's applied heads) makes
/// the next poll immediate.
pub(crate) fn spawn_store_heads(
    forest: Forest,
    epochs: Arc<EpochLogStore>,
    wake: Option<watch::Receiver<Option<SignedHead>>>,
    poll: Duration,
    cancel: CancellationToken,
) -> (watch::Receiver<Option<SignedHead>>, JoinHandle<()>) {
    let initial = epochs
        .latest()
        .ok()
        .flatten()
        .filter(|h| readable_now(&forest, &epochs, h.head.epoch));
    let (tx, rx) = watch::channel(initial);
    let task = tokio::spawn(async move {
        let mut wake = wake;
        let mut failing = false;
        loop {
            let (f, e) = (forest.clone(), Arc::clone(&epochs));
            let served = tx.borrow().as_ref().map_or(0, |h| h.head.epoch);
            let step = candor_sim::spawn_blocking(move || -> Result<Option<SignedHead>, String> {
                e.reload().map_err(|err| err.to_string())?;
                // Nothing new: one read of the log's end per poll, no shard reads.
                if e.latest_epoch() <= served {
                    return Ok(None);
                }
                let Some(head) = e.latest().map_err(|err| err.to_string())? else {
                    return Ok(None);
                };
                Ok(readable_now(&f, &e, head.head.epoch).then_some(head))
            })
            .await;
            match step {
                Ok(Ok(Some(head))) => {
                    if failing {
                        info!("reading the epoch log from the store again");
                        failing = false;
                    }
                    let epoch = head.head.epoch;
                    if tx.send_if_modified(|cur| {
                        if cur.as_ref().is_some_and(|c| c.head.epoch >= epoch) {
                            false
                        } else {
                            *cur = Some(head);
                            true
                        }
                    }) {
                        debug!(epoch, "new epoch readable from the store");
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(err)) => {
                    if !failing {
                        warn!(error = %err, "cannot follow the epoch log in the store");
                        failing = true;
                    }
                }
                Err(err) => warn!(error = %err, "epoch log poll task failed"),
            }
            let woken = async {
                match wake.as_mut() {
                    Some(w) => {
                        if w.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(poll) => {}
                _ = woken => {}
            }
        }
    });
    (rx, task)
}

/// The API role over a shared store: trees, epoch log and the latest readable head,
/// with no Raft group and no key. Cheap to share; stop it with
/// [`StoreReader::shutdown`].
pub struct StoreReader {
    public: PublicConfig,
    store: Arc<dyn Store>,
    forest: Forest,
    epochs: Arc<EpochLogStore>,
    heads: watch::Receiver<Option<SignedHead>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReader")
            .field("namespace", &self.public.namespace)
            .finish_non_exhaustive()
    }
}

impl StoreReader {
    /// Open the trees and epoch log of the deployment `public` describes over `store`
    /// and start following it (`tree_cache_bytes`: the tree node cache budget). Call
    /// inside a tokio runtime.
    pub fn open(
        store: Arc<dyn Store>,
        public: PublicConfig,
        tree_cache_bytes: u64,
    ) -> Result<StoreReader, NodeError> {
        public
            .validate()
            .map_err(|e| NodeError::Config(e.to_string()))?;
        check_identity(&*store, &public, false)?;
        let forest = Forest::open(
            Arc::clone(&store),
            TreeConfig {
                shard_bits: public.shard_bits,
                cache_bytes: tree_cache_bytes,
                // Never seals; the setting only matters to writers.
                seal_durability: Durability::Buffered,
                ..TreeConfig::default()
            },
        )?;
        let epochs = Arc::new(EpochLogStore::open(Arc::clone(&store))?);
        let cancel = CancellationToken::new();
        let (heads, task) = spawn_store_heads(
            forest.clone(),
            Arc::clone(&epochs),
            None,
            poll_interval(Duration::from_millis(public.epoch_interval_ms)),
            cancel.child_token(),
        );
        info!(
            namespace = %public.namespace,
            epoch = epochs.latest_epoch(),
            "store reader started"
        );
        Ok(StoreReader {
            public,
            store,
            forest,
            epochs,
            heads,
            cancel,
            task,
        })
    }

    /// The public configuration the shared-state members recorded in `store` (they
    /// write it at every start; `None` before the first member started). An API node
    /// needs nothing else but the VRF secret: no signing key.
    pub fn stored_public_config(store: &dyn Store) -> Result<Option<PublicConfig>, NodeError> {
        match store.get(Space::Meta, PUBLIC_CONFIG_KEY)? {
            None => Ok(None),
            Some(v) => PublicConfig::decode(&v)
                .map(Some)
                .map_err(|e| NodeError::Storage(format!("stored public configuration: {e}"))),
        }
    }

    /// [`StoreReader::stored_public_config`], waiting (polling every second, up to
    /// `timeout`) for the first member to record it.
    pub async fn wait_for_public_config(
        store: &dyn Store,
        timeout: std::time::Duration,
    ) -> Result<PublicConfig, NodeError> {
        let step = std::time::Duration::from_secs(1);
        let mut waited = std::time::Duration::ZERO;
        loop {
            if let Some(p) = Self::stored_public_config(store)? {
                return Ok(p);
            }
            if waited.is_zero() {
                tracing::warn!("no member has started on this store yet: waiting");
            }
            if waited > timeout {
                return Err(NodeError::Config(format!(
                    "no member recorded its configuration in the store within {timeout:?}"
                )));
            }
            tokio::time::sleep(step).await;
            waited += step;
        }
    }

    /// The store (the API keeps auditor cosignatures in it).
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// The trees, read at any retained revision.
    pub fn forest(&self) -> Forest {
        self.forest.clone()
    }

    /// The epoch log as far as this reader has followed it.
    pub fn epochs(&self) -> Arc<EpochLogStore> {
        Arc::clone(&self.epochs)
    }

    /// Auditors' cosignatures, written straight into the shared store (every member
    /// and API node reads that one copy).
    pub fn cosignature_log(&self) -> Arc<dyn crate::CosignatureLog> {
        Arc::new(crate::DirectCosignatures(Arc::clone(&self.epochs)))
    }

    /// The latest signed head readable from the store.
    pub fn heads(&self) -> watch::Receiver<Option<SignedHead>> {
        self.heads.clone()
    }

    /// The public configuration.
    pub fn config(&self) -> &PublicConfig {
        &self.public
    }

    /// Stop following the store.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}
