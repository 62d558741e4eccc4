//! The verifying client and the owner monitor, over candor-client.

use std::sync::Arc;
use std::time::Duration;

use candor_client::tls::{Certificate, ClientTlsConfig};
use candor_client::{HeadTracker, MonitorState};
use tokio::sync::Mutex;

use crate::error::{CandorError, Result};
use crate::runtime::{block_on, guard};
use crate::types::{
    HEAD_CHECKS, Head, HistoryResult, KnownVersion, LookupResult, MergeResult, MonitorEvent, Pin,
    PublishResult, checks, decode_head, digest, history_result, lookup_result,
};

/// Default poll interval of `wait_merged` when the caller passes 0.
const DEFAULT_POLL_MS: u64 = 200;

/// A verifying Candor client.
///
/// Every answer is verified against the pinned configuration before it is
/// returned, and every signed head seen (whatever the call) must be
/// consistent with the heads this client saw before; any failure raises
/// `CandorError.Verification`. Thread-safe; calls block the calling thread.
#[derive(uniffi::Object)]
pub struct Client {
    inner: candor_client::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

fn label_arg(label: &[u8]) -> Result<()> {
    if label.is_empty() {
        return Err(CandorError::invalid("empty label"));
    }
    Ok(())
}

#[uniffi::export]
impl Client {
    /// Connects to `target` (`http://host:port`, or `https://host:port` with
    /// `tls_ca_pem`, the PEM of the CA that issued the server's certificate),
    /// fetches the service's configuration and checks it against `pin`
    /// (`CandorError.Verification` of kind `PinMismatch` otherwise).
    ///
    /// `token` is the bearer token sent with publishes (reads never carry it).
    /// `tracker_state` restores the head tracker saved by `tracker_state()`
    /// in an earlier session, so heads stay consistent across sessions.
    #[uniffi::constructor(default(token = None, tls_ca_pem = None, tracker_state = None))]
    pub fn new(
        target: String,
        pin: Pin,
        token: Option<String>,
        tls_ca_pem: Option<Vec<u8>>,
        tracker_state: Option<Vec<u8>>,
    ) -> Result<Arc<Self>> {
        block_on(async move {
            let pinned = pin.to_pinned()?;
            let mut c = match tls_ca_pem {
                Some(pem) => {
                    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
                    candor_client::Client::connect_tls(target, tls, pinned).await?
                }
                None => candor_client::Client::connect(target, pinned).await?,
            };
            if let Some(t) = token {
                c = c.with_token(&t)?;
            }
            if let Some(state) = tracker_state {
                let tracker = HeadTracker::from_bytes(&state, &*c.chain())?;
                c = c.with_tracker(tracker);
            }
            Ok(Arc::new(Client { inner: c }))
        })
    }

    /// The pinned configuration's digest, 64 hex characters.
    pub fn config_digest(&self) -> String {
        hex::encode(self.inner.config().digest())
    }

    /// The pinned configuration in its canonical encoding (pin it with
    /// `Pin.Config` next time).
    pub fn config_bytes(&self) -> Vec<u8> {
        self.inner.config().encode()
    }

    /// The service's namespace.
    pub fn namespace(&self) -> String {
        self.inner.config().namespace.clone()
    }

    /// Publishes `value` as the next version of `label` and verifies the
    /// returned SMT against exactly this label and value. `idempotency_key`:
    /// `None` for a fresh random key; pass the key of an interrupted publish
    /// to learn its outcome without publishing twice. Needs a token.
    #[uniffi::method(default(idempotency_key = None))]
    pub fn publish(
        &self,
        label: Vec<u8>,
        value: Vec<u8>,
        idempotency_key: Option<String>,
    ) -> Result<PublishResult> {
        label_arg(&label)?;
        block_on(async move {
            let p = match idempotency_key {
                Some(k) => self.inner.publish_with_key(&label, &value, &k).await?,
                None => self.inner.publish(&label, &value).await?,
            };
            Ok(p.into())
        })
    }

    /// Looks `label` up at `epoch` (`None`: the latest signed epoch) and
    /// verifies the proof, the head and its consistency with earlier heads.
    #[uniffi::method(default(epoch = None))]
    pub fn lookup(&self, label: Vec<u8>, epoch: Option<u64>) -> Result<LookupResult> {
        label_arg(&label)?;
        block_on(async move {
            let v = self.inner.lookup(&label, epoch).await?;
            Ok(lookup_result(&label, &v, true))
        })
    }

    /// Every version of `label` up to `epoch` (`None`: the latest signed
    /// epoch), verified: nothing can be hidden from the owner.
    #[uniffi::method(default(epoch = None))]
    pub fn history(&self, label: Vec<u8>, epoch: Option<u64>) -> Result<HistoryResult> {
        label_arg(&label)?;
        block_on(async move {
            let h = self.inner.history_at(&label, epoch).await?;
            Ok(history_result(&label, &h, true))
        })
    }

    /// Waits until the SMT of a publish (`PublishResult.smt`) is honoured: a
    /// signed epoch at or before the merge deadline holds this exact version.
    /// Raises `Verification` of kind `BrokenPromise` (with evidence) when a
    /// head past the deadline proves it was not, and `Timeout` after
    /// `timeout_ms` without a decision. `poll_ms`: 0 for the default (200 ms).
    #[uniffi::method(default(timeout_ms = 60000, poll_ms = 0))]
    pub fn wait_merged(
        &self,
        label: Vec<u8>,
        smt: Vec<u8>,
        timeout_ms: u64,
        poll_ms: u64,
    ) -> Result<MergeResult> {
        label_arg(&label)?;
        block_on(async move {
            let smt = candor_client::candor_core::signed::SignedMutationTimestamp::decode(&smt)
                .map_err(|e| CandorError::invalid(format!("SMT: {e}")))?;
            let poll = Duration::from_millis(if poll_ms == 0 {
                DEFAULT_POLL_MS
            } else {
                poll_ms
            });
            // A service that has not signed its first epoch yet answers
            // FAILED_PRECONDITION: keep waiting for it, within the timeout.
            let wait = async {
                loop {
                    match self.inner.wait_merged(&label, &smt, poll).await {
                        Err(e) if e.code() == Some(tonic::Code::FailedPrecondition) => {}
                        other => return other,
                    }
                    tokio::time::sleep(poll).await;
                }
            };
            let waited = tokio::time::timeout(Duration::from_millis(timeout_ms), wait)
                .await
                .map_err(|_| CandorError::Timeout {
                    detail: format!(
                        "version {} not shown merged within {timeout_ms} ms (deadline {})",
                        smt.smt.version, smt.smt.merge_deadline_ms
                    ),
                })??;
            let history = history_result(&label, &waited.history, true);
            let mut verified = history.verified.clone();
            verified.push(
                "the including head's timestamp is at or before the SMT's merge deadline".into(),
            );
            verified.push("the history holds the SMT's version with its exact leaf hash".into());
            Ok(MergeResult {
                label,
                version: smt.smt.version,
                leaf_hash: smt.smt.leaf_hash.to_vec(),
                head: history.head.clone(),
                history,
                history_proof: waited.history_proof,
                verified,
            })
        })
    }

    /// The latest signed head, verified and checked for consistency.
    pub fn latest_head(&self) -> Result<Head> {
        block_on(async move { Ok(Head::from(&self.inner.latest_head().await?)) })
    }

    /// The signed head of `epoch`, verified and checked for consistency.
    pub fn head(&self, epoch: u64) -> Result<Head> {
        block_on(async move { Ok(Head::from(&self.inner.head(epoch).await?)) })
    }

    /// Checks a signed head obtained elsewhere (gossip, another replica,
    /// another device) against this client's view: its signature, then a
    /// consistency proof with the last head seen. Returns the decoded head.
    pub fn observe_head(&self, signed_head: Vec<u8>) -> Result<Head> {
        block_on(async move {
            let h = decode_head(&*self.inner.chain(), &signed_head)?;
            self.inner.observe_head(&h).await?;
            Ok(Head::from(&h))
        })
    }

    /// Verifies that the epoch log of `older` is a prefix of `newer`'s (both
    /// signed heads, any order of fetching), with a consistency proof from
    /// the service; the two must be different epochs. A different head served
    /// for either epoch is `Verification` of kind `Equivocation`. Does not
    /// change this client's remembered head.
    pub fn verify_consistency(&self, older: Vec<u8>, newer: Vec<u8>) -> Result<Vec<String>> {
        block_on(async move {
            let chain = self.inner.chain();
            let (a, b) = (decode_head(&*chain, &older)?, decode_head(&*chain, &newer)?);
            if a.head.epoch >= b.head.epoch {
                return Err(CandorError::invalid(format!(
                    "older head is epoch {}, newer is {}: need older < newer",
                    a.head.epoch, b.head.epoch
                )));
            }
            self.inner
                .consistency_proof(a.head.epoch, b.head.epoch, &a, &b)
                .await?;
            let mut v = checks(HEAD_CHECKS);
            v.push("the service serves exactly these two heads for their epochs".into());
            v.push(
                "the older head's epoch log is a prefix of the newer one's; time never goes back"
                    .into(),
            );
            Ok(v)
        })
    }

    /// The head tracker's state (the last verified head), to persist and pass
    /// as `tracker_state` next session.
    pub fn tracker_state(&self) -> Result<Vec<u8>> {
        block_on(async move { Ok(self.inner.tracker().await.to_bytes()) })
    }

    /// The last verified head this client remembers, if any.
    pub fn last_head(&self) -> Result<Option<Head>> {
        block_on(async move { Ok(self.inner.tracker().await.latest().map(Head::from)) })
    }

    /// An owner monitor over this client; `state` restores one saved with
    /// `Monitor.state()`.
    #[uniffi::method(default(state = None))]
    pub fn monitor(self: Arc<Self>, state: Option<Vec<u8>>) -> Result<Arc<Monitor>> {
        Monitor::new(self, state)
    }
}

impl Client {
    /// The wrapped SDK client (Rust callers of this crate).
    pub fn sdk(&self) -> &candor_client::Client {
        &self.inner
    }
}

/// The owner monitor: watches the owner's own labels and raises an alarm for
/// any version the owner did not publish, any rewritten or shortened
/// history. Call `poll` periodically (every epoch interval or slower);
/// persist `state()` between sessions.
#[derive(uniffi::Object)]
pub struct Monitor {
    inner: Mutex<candor_client::Monitor>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

#[uniffi::export]
impl Monitor {
    /// A monitor over `client`; `state`: bytes from `state()` of an earlier
    /// session, or `None` to start empty.
    #[uniffi::constructor(default(state = None))]
    pub fn new(client: Arc<Client>, state: Option<Vec<u8>>) -> Result<Arc<Self>> {
        guard(|| {
            let state = match state {
                Some(b) => MonitorState::from_bytes(&b)?,
                None => MonitorState::new(),
            };
            Ok(Arc::new(Monitor {
                inner: Mutex::new(candor_client::Monitor::new(client.inner.clone(), state)),
            }))
        })
    }

    /// Starts watching `label`, published by the owner as `known` versions
    /// (may be empty: then any version is an alarm).
    pub fn watch(&self, label: Vec<u8>, known: Vec<KnownVersion>) -> Result<()> {
        label_arg(&label)?;
        guard(|| {
            let known = known
                .iter()
                .map(|k| Ok((k.version, digest("leaf_hash", &k.leaf_hash)?)))
                .collect::<Result<Vec<_>>>()?;
            block_on(async move {
                self.inner.lock().await.state_mut().watch(&label, known);
                Ok(())
            })
        })
    }

    /// Records a publish the owner just made (call it right after publishing).
    pub fn expect_publish(&self, published: PublishResult) -> Result<()> {
        label_arg(&published.label)?;
        guard(|| {
            let h = digest("leaf_hash", &published.leaf_hash)?;
            block_on(async move {
                let mut m = self.inner.lock().await;
                m.state_mut().expect(&published.label, published.version, h);
                Ok(())
            })
        })
    }

    /// One monitor step: if a newer signed epoch exists, fetches and verifies
    /// every watched label's history at it and compares it with what the
    /// owner published. Returns the findings (alarms have `alarm = true`).
    pub fn poll(&self) -> Result<Vec<MonitorEvent>> {
        block_on(async move {
            let mut m = self.inner.lock().await;
            Ok(m.poll().await?.into_iter().map(Into::into).collect())
        })
    }

    /// The epoch of the last check (0 before the first).
    pub fn last_epoch(&self) -> Result<u64> {
        block_on(async move { Ok(self.inner.lock().await.last_epoch()) })
    }

    /// The watched labels.
    pub fn labels(&self) -> Result<Vec<Vec<u8>>> {
        block_on(async move {
            let m = self.inner.lock().await;
            Ok(m.state().labels().map(<[u8]>::to_vec).collect())
        })
    }

    /// The monitor's state (expectations, versions seen, alarms raised), to
    /// persist and pass to the constructor next session.
    pub fn state(&self) -> Result<Vec<u8>> {
        block_on(async move { Ok(self.inner.lock().await.state().to_bytes()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pins_are_invalid_arguments() {
        let r = Client::new(
            "http://127.0.0.1:1".into(),
            Pin::Digest { hex: "zz".into() },
            None,
            None,
            None,
        );
        assert!(matches!(r, Err(CandorError::InvalidArgument { .. })));
    }

    #[test]
    fn unreachable_service_is_a_transport_error() {
        // Port 1 on loopback: nothing listens there in test environments.
        let r = Client::new(
            "http://127.0.0.1:1".into(),
            Pin::Digest {
                hex: "00".repeat(32),
            },
            None,
            None,
            None,
        );
        assert!(matches!(r, Err(CandorError::Transport { .. })), "got {r:?}");
    }
}
