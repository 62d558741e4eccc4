//! The async gRPC client: a thin layer of calls, retries and head tracking
//! over the pure checks in [`crate::verify`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use candor_core::CoreError;
use candor_core::log::HeadExtensionProof;
use candor_core::proof::history::{PageAnchor, VerifiedHistory as CoreHistory};
use candor_core::rotation::ConfigChain;
use candor_core::signed::{Cosignature, PublicConfig, SignedHead, SignedMutationTimestamp};
use candor_proto::candor::v1 as pb;
use candor_proto::candor::v1::key_transparency_client::KeyTransparencyClient;
use tokio::sync::Mutex;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::error::{ClientError, Result, vfail};
use crate::evidence::{BrokenPromiseEvidence, HeadWithHistory};
use crate::pin::PinnedConfig;
use crate::tracker::{HeadCheck, HeadTracker};
use crate::verify::{self, VerifiedHistory, VerifiedLookup, VerifiedPublish};

/// gRPC's default decode limit; raised to the server's advertised limit.
const DEFAULT_MAX_MESSAGE: usize = 4 << 20;
/// Upper bound on the decode limit a server can make us accept (its
/// advertised limit is not authenticated).
const MAX_MESSAGE_CAP: usize = 512 << 20;

/// Retries of calls that failed with `UNAVAILABLE` or `DEADLINE_EXCEEDED`
/// (the statuses the API documents as "retry with backoff"; writes are
/// retried with the same idempotency key, so a retry never publishes twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, including the first (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles each time up to `max_backoff`.
    /// The actual sleep is drawn uniformly from `[backoff/2, backoff]`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Tunables of a [`Client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    pub retry: RetryPolicy,
    /// How far in the future of the local clock an SMT timestamp may be
    /// (a post-dated SMT would push its deadline out). Default 5 minutes.
    pub max_clock_skew_ms: u64,
    /// Connect timeout used by [`Client::connect`] and [`Client::connect_tofu`].
    pub connect_timeout: Duration,
    /// The freshness rule for heads served as the latest.
    pub freshness: Freshness,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            max_clock_skew_ms: 5 * 60 * 1000,
            connect_timeout: Duration::from_secs(10),
            freshness: Freshness::default(),
        }
    }
}

/// Which auditors must have cosigned a head before [`Client::latest_cosigned_head`]
/// accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignerPolicy {
    /// The auditors' public keys.
    pub keys: Vec<candor_core::signed::PublicKey>,
    /// How many distinct ones of them must have cosigned.
    pub threshold: usize,
    /// How far behind the latest head the newest cosigned head may be.
    pub max_lag_epochs: u64,
}

/// How old a head served as the latest may be (docs/protocol.md §9.4).
///
/// Every call that asks for the latest epoch (`latest_head`, `lookup(label,
/// None)`, `history`) refuses with [`ClientError::StaleHead`] a head older
/// than the last head this client verified before the call, older than the
/// maximum head age, or dated more than `allowance_ms` ahead of the local
/// clock. Calls for an explicit epoch are not subject to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// The maximum head age in milliseconds; `None` derives it from the
    /// pinned configuration: `10 × epoch_interval_ms + allowance_ms`.
    pub max_head_age_ms: Option<u64>,
    /// Clock skew and failover allowance (default 60 s).
    pub allowance_ms: u64,
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            max_head_age_ms: None,
            allowance_ms: candor_core::signed::HEAD_AGE_ALLOWANCE_MS,
        }
    }
}

impl Freshness {
    /// The maximum head age under `config`.
    pub fn max_age_ms(&self, config: &PublicConfig) -> u64 {
        self.max_head_age_ms
            .unwrap_or_else(|| config.max_head_age_ms(self.allowance_ms))
    }
}

/// One item of [`Client::publish_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishItem {
    pub label: Vec<u8>,
    pub value: Vec<u8>,
    /// `None`: a random key is generated (recommended).
    pub idempotency_key: Option<String>,
}

impl PublishItem {
    pub fn new(label: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            label: label.into(),
            value: value.into(),
            idempotency_key: None,
        }
    }
}

/// Proof that an SMT was honoured: a signed head with a timestamp ≤ the
/// SMT's merge deadline whose map holds the label with the promised leaf in
/// its history chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeEvidence {
    pub label: Vec<u8>,
    pub smt: SignedMutationTimestamp,
    /// The label's verified history at the including epoch (its `head` is
    /// that epoch's signed head).
    pub history: VerifiedHistory,
    /// Canonical `HistoryProof` bytes at that epoch, for third parties.
    pub history_proof: Vec<u8>,
}

impl MergeEvidence {
    /// The including epoch.
    pub fn epoch(&self) -> u64 {
        self.history.epoch()
    }
}

/// A fresh idempotency key: 16 random bytes, hex.
pub fn new_idempotency_key() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("operating system RNG unavailable");
    hex::encode(b)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn jitter(backoff: Duration) -> Duration {
    let mut b = [0u8; 8];
    let r = getrandom::fill(&mut b).map_or(0, |()| u64::from_le_bytes(b));
    let half = backoff / 2;
    let span = half.as_micros() as u64;
    half + Duration::from_micros(if span == 0 { 0 } else { r % (span + 1) })
}

/// A verifying Candor client.
///
/// Every answer is verified against the pinned configuration before it is
/// returned, and every signed head seen is checked for consistency with the
/// last verified head (see [`HeadTracker`]). Cheap to clone: clones share
/// the connection and the head tracker.
#[derive(Clone)]
pub struct Client {
    rpc: KeyTransparencyClient<Channel>,
    /// The pinned configuration.
    config: Arc<PublicConfig>,
    /// Every configuration verified from the pin (key rotations, docs/protocol.md
    /// §8.1); extended when the service shows a newer one.
    chain: Arc<std::sync::RwLock<Arc<ConfigChain>>>,
    limits: Option<pb::ServiceLimits>,
    token: Option<MetadataValue<Ascii>>,
    tracker: Arc<Mutex<HeadTracker>>,
    /// Heads whose signatures were verified (by exact bytes).
    heads: Arc<std::sync::Mutex<verify::HeadCache>>,
    /// VRF proofs verified (by exact bytes): a label's proof is the same in
    /// every answer about it, so it is verified once per label.
    vrfs: Arc<verify::VrfMemo>,
    options: ClientOptions,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("namespace", &self.config.namespace)
            .field("config_digest", &hex::encode(self.config.digest()))
            .field("authenticated", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `endpoint` (e.g. `http://127.0.0.1:7420`), fetches the
    /// configuration and checks it against `pinned`
    /// ([`ClientError::PinMismatch`] otherwise).
    pub async fn connect(endpoint: impl Into<String>, pinned: PinnedConfig) -> Result<Client> {
        let options = ClientOptions::default();
        let ep = endpoint_of(endpoint.into(), &options)?;
        Self::connect_endpoint(ep, pinned).await
    }

    /// As [`connect`](Self::connect), over TLS: `endpoint` is `https://host:port` or
    /// `host:port`; the server's certificate is checked against `tls`'s CA (and the
    /// host), and `tls`'s identity, if any, is presented as a client certificate.
    ///
    /// TLS protects the connection; every answer is still verified against `pinned`.
    pub async fn connect_tls(
        endpoint: impl Into<String>,
        tls: tonic::transport::ClientTlsConfig,
        pinned: PinnedConfig,
    ) -> Result<Client> {
        let endpoint = endpoint.into();
        let uri = if endpoint.contains("://") {
            endpoint
        } else {
            format!("https://{endpoint}")
        };
        if !uri.starts_with("https://") {
            return Err(ClientError::InvalidArgument(format!(
                "connect_tls needs an https:// endpoint, got {uri:?}"
            )));
        }
        let ep = endpoint_of(uri, &ClientOptions::default())?.tls_config(tls)?;
        Self::connect_endpoint(ep, pinned).await
    }

    /// As [`connect`](Self::connect) with a caller-configured endpoint
    /// (timeouts, keep-alive, TLS when tonic's TLS features are enabled).
    pub async fn connect_endpoint(endpoint: Endpoint, pinned: PinnedConfig) -> Result<Client> {
        let channel = endpoint.connect().await?;
        Self::from_channel(channel, pinned).await
    }

    /// As [`connect`](Self::connect) over an existing channel.
    pub async fn from_channel(channel: Channel, pinned: PinnedConfig) -> Result<Client> {
        let (rpc, served) = fetch_config(channel).await?;
        let chain = verify::config_chain(&pinned, &served)?;
        let config = chain.get(&pinned.digest()).cloned().ok_or_else(|| {
            vfail("configuration chain")(CoreError::Context("pin not in chain".into()))
        })?;
        Ok(Client::assemble(rpc, config, chain, served.limits))
    }

    /// **Trust on first use.** Connects and accepts whatever configuration
    /// the service serves, returning it so the caller can pin it (store
    /// `config.encode()` or `config.digest()`) and use
    /// [`connect`](Self::connect) from then on.
    ///
    /// Only as safe as the first connection: an attacker in the path at that
    /// moment can substitute its own keys, and everything verified later is
    /// then verified against them. Prefer a pin distributed out of band.
    pub async fn connect_tofu(endpoint: impl Into<String>) -> Result<(Client, PublicConfig)> {
        let options = ClientOptions::default();
        let channel = endpoint_of(endpoint.into(), &options)?.connect().await?;
        let (rpc, served) = fetch_config(channel).await?;
        let config = PublicConfig::decode(&served.config).map_err(vfail("public configuration"))?;
        let chain = verify::config_chain(&PinnedConfig::Digest(config.digest()), &served)?;
        Ok((
            Client::assemble(rpc, config.clone(), chain, served.limits),
            config,
        ))
    }

    fn assemble(
        rpc: KeyTransparencyClient<Channel>,
        config: PublicConfig,
        chain: ConfigChain,
        limits: Option<pb::ServiceLimits>,
    ) -> Self {
        let max = limits
            .as_ref()
            .map_or(DEFAULT_MAX_MESSAGE, |l| l.max_message_bytes as usize)
            .clamp(DEFAULT_MAX_MESSAGE, MAX_MESSAGE_CAP);
        Client {
            rpc: rpc
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            config: Arc::new(config),
            chain: Arc::new(std::sync::RwLock::new(Arc::new(chain))),
            limits,
            token: None,
            tracker: Arc::new(Mutex::new(HeadTracker::new())),
            heads: Arc::default(),
            vrfs: Arc::default(),
            options: ClientOptions::default(),
        }
    }

    /// Sends `authorization: Bearer <token>` with every write (Publish,
    /// PublishBatch). Reads never carry it.
    pub fn with_token(mut self, token: &str) -> Result<Self> {
        let v = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| ClientError::InvalidArgument("token must be printable ASCII".into()))?;
        self.token = Some(v);
        Ok(self)
    }

    pub fn with_options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// Replaces the head tracker, e.g. with one persisted by a previous
    /// session ([`HeadTracker::from_bytes`]). Clones made before this call
    /// keep the old tracker.
    pub fn with_tracker(mut self, tracker: HeadTracker) -> Self {
        self.tracker = Arc::new(Mutex::new(tracker));
        self
    }

    /// The verified, pinned configuration.
    pub fn config(&self) -> &PublicConfig {
        &self.config
    }

    /// Every configuration verified from the pin, oldest first: after a key
    /// rotation heads and SMTs verify under the configuration in force for them
    /// (docs/protocol.md §8.1).
    pub fn chain(&self) -> Arc<ConfigChain> {
        Arc::clone(&self.chain.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `f` against the chain. When it fails verification, asks the service for
    /// its configurations once (it may have rotated its keys since) and, if the chain
    /// grew from the pin, runs `f` again.
    async fn verified<T>(&self, mut f: impl FnMut(&ConfigChain) -> Result<T>) -> Result<T> {
        let chain = self.chain();
        match f(&chain) {
            Err(e @ ClientError::Verification { .. }) => match self.refresh_chain(&chain).await {
                Ok(true) => f(&self.chain()),
                Err(r @ ClientError::Verification { .. }) => Err(r),
                _ => Err(e),
            },
            r => r,
        }
    }

    /// Fetches and verifies the service's chain; adopts it when it extends `seen`.
    async fn refresh_chain(&self, seen: &ConfigChain) -> Result<bool> {
        let served = self
            .call(|mut c| async move { c.get_config(pb::GetConfigRequest {}).await })
            .await?;
        let chain = verify::config_chain(&PinnedConfig::Digest(self.config.digest()), &served)?;
        if chain.len() <= seen.len() {
            return Ok(false);
        }
        if !chain.extends(seen) {
            return Err(vfail("configuration chain")(CoreError::Inconsistent(
                "the served configurations do not extend those verified before".into(),
            )));
        }
        *self.chain.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(chain);
        Ok(true)
    }

    /// The server's advertised (unauthenticated) operational limits.
    pub fn limits(&self) -> Option<&pb::ServiceLimits> {
        self.limits.as_ref()
    }

    /// A snapshot of the head tracker, to persist with
    /// [`HeadTracker::to_bytes`].
    pub async fn tracker(&self) -> HeadTracker {
        self.tracker.lock().await.clone()
    }

    /// Makes this client remember verified VRF proofs in `other`'s memory
    /// too (clients of one publisher over several connections: a label
    /// published through one is not verified again through another). Sound
    /// across configurations: the memory is keyed by the VRF key as well.
    pub fn share_vrf_memo(&mut self, other: &Client) {
        self.vrfs = Arc::clone(&other.vrfs);
    }

    /// This client with a memory of `capacity` verified VRF proofs per
    /// generation (default 65,536; 0 verifies every VRF proof it is served,
    /// the cost of a client that has never seen the label).
    pub fn with_vrf_memo(mut self, capacity: usize) -> Self {
        self.vrfs = Arc::new(verify::VrfMemo::new(capacity));
        self
    }

    /// Verifies a raw `LookupResponse` for `label` as [`Self::lookup`] does
    /// (signature, proof, with this client's memory of verified heads and
    /// VRF proofs), without the freshness and consistency checks, which
    /// need the tracker ([`Self::observe_head`]).
    pub fn verify_lookup(
        &self,
        label: &[u8],
        epoch: Option<u64>,
        resp: &pb::LookupResponse,
    ) -> Result<VerifiedLookup> {
        verify::lookup_cached(&self.heads, &self.vrfs, &*self.chain(), label, epoch, resp)
    }

    /// The generated gRPC client, for calls this SDK does not wrap. Nothing
    /// it returns is verified.
    pub fn raw(&self) -> KeyTransparencyClient<Channel> {
        self.rpc.clone()
    }

    async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnMut(KeyTransparencyClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        retrying(&self.rpc, &self.options.retry, f).await
    }

    fn write_request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = &self.token {
            r.metadata_mut().insert("authorization", t.clone());
        }
        #[cfg(feature = "otel")]
        candor_telemetry::inject(r.metadata_mut());
        r
    }

    // ---------------------------------------------------------------- writes

    /// Publishes `value` as the next version of `label` with a fresh random
    /// idempotency key, and verifies the SMT against exactly this label and
    /// value ([`verify::publish`]) and the local clock.
    pub async fn publish(&self, label: &[u8], value: &[u8]) -> Result<VerifiedPublish> {
        self.publish_with_key(label, value, &new_idempotency_key())
            .await
    }

    /// As [`publish`](Self::publish) with a caller-chosen idempotency key:
    /// repeating a call with the same key returns the original result
    /// instead of publishing again (use it to resume after a crash).
    pub async fn publish_with_key(
        &self,
        label: &[u8],
        value: &[u8],
        key: &str,
    ) -> Result<VerifiedPublish> {
        if label.is_empty() {
            return Err(ClientError::InvalidArgument("empty label".into()));
        }
        let req = pb::PublishRequest {
            label: label.to_vec(),
            value: value.to_vec(),
            idempotency_key: key.to_owned(),
        };
        let resp = self
            .call(|mut c| {
                let r = self.write_request(req.clone());
                async move { c.publish(r).await }
            })
            .await?;
        let p = self
            .verified(|c| verify::publish_memo(&self.vrfs, c, label, value, key, &resp))
            .await?;
        verify::smt_timestamp(&p.smt, now_ms(), self.options.max_clock_skew_ms)?;
        Ok(p)
    }

    /// Erases the value of `version` of `label` (owner only, see the `Erase`
    /// RPC): from then on lookups and histories serve that version as
    /// redacted, and still verify. Safe to retry.
    pub async fn erase(&self, label: &[u8], version: u64) -> Result<()> {
        if label.is_empty() || version == 0 {
            return Err(ClientError::InvalidArgument(
                "erase needs a label and a version ≥ 1".into(),
            ));
        }
        let req = pb::EraseRequest {
            label: label.to_vec(),
            version,
        };
        self.call(|mut c| {
            let r = self.write_request(req.clone());
            async move { c.erase(r).await }
        })
        .await?;
        Ok(())
    }

    /// Publishes several labels in one call (the batch is not atomic; see
    /// the proto). Every item gets an idempotency key, so retries of the
    /// whole batch after `UNAVAILABLE` are safe; results are verified item by
    /// item and returned in order.
    pub async fn publish_batch(&self, items: &[PublishItem]) -> Result<Vec<VerifiedPublish>> {
        if items.iter().any(|i| i.label.is_empty()) {
            return Err(ClientError::InvalidArgument("empty label in batch".into()));
        }
        let keys: Vec<String> = items
            .iter()
            .map(|i| {
                i.idempotency_key
                    .clone()
                    .unwrap_or_else(new_idempotency_key)
            })
            .collect();
        let req = pb::PublishBatchRequest {
            items: items
                .iter()
                .zip(&keys)
                .map(|(i, k)| pb::PublishRequest {
                    label: i.label.clone(),
                    value: i.value.clone(),
                    idempotency_key: k.clone(),
                })
                .collect(),
        };
        let resp = self
            .call(|mut c| {
                let r = self.write_request(req.clone());
                async move { c.publish_batch(r).await }
            })
            .await?;
        if resp.results.len() != items.len() {
            return Err(crate::error::malformed(
                "publish batch",
                format!("{} results for {} items", resp.results.len(), items.len()),
            ));
        }
        let now = now_ms();
        let verified = self
            .verified(|c| {
                items
                    .iter()
                    .zip(&keys)
                    .zip(&resp.results)
                    .map(|((i, k), r)| {
                        verify::publish_memo(&self.vrfs, c, &i.label, &i.value, k, r)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        for p in &verified {
            verify::smt_timestamp(&p.smt, now, self.options.max_clock_skew_ms)?;
        }
        Ok(verified)
    }

    // ----------------------------------------------------------------- heads

    /// Checks `head` (already signature-verified) against the tracker,
    /// fetching a consistency proof when it is not the remembered epoch.
    /// Use it for heads obtained elsewhere (gossip, another replica).
    pub async fn observe_head(&self, head: &SignedHead) -> Result<()> {
        let mut tracker = self.tracker.lock().await;
        let check = tracker.check(head)?;
        match (check, tracker.latest().cloned()) {
            (HeadCheck::NeedConsistency { from, to }, Some(latest)) => {
                let (older, newer) = if head.head.epoch < latest.head.epoch {
                    (head, &latest)
                } else {
                    (&latest, head)
                };
                let proof = self.consistency_proof(from, to, older, newer).await?;
                tracker.accept(head, Some(&proof))?;
            }
            _ => {
                tracker.accept(head, None)?;
            }
        }
        Ok(())
    }

    /// Fetches and verifies `Consistency(older, newer)` for two heads the
    /// caller holds (see [`verify::consistency`]). Does not touch the tracker.
    pub async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
        older: &SignedHead,
        newer: &SignedHead,
    ) -> Result<HeadExtensionProof> {
        let resp = self
            .call(|mut c| async move {
                c.consistency(pb::ConsistencyRequest {
                    from_epoch: from,
                    to_epoch: to,
                })
                .await
            })
            .await?;
        self.verified(|c| verify::consistency(c, &resp, older, newer))
            .await
    }

    /// The latest signed head, verified and checked against the tracker.
    pub async fn latest_head(&self) -> Result<SignedHead> {
        let seen = self.seen_epoch().await;
        let resp = self
            .call(|mut c| async move { c.get_latest_epoch(pb::GetLatestEpochRequest {}).await })
            .await?;
        let head = self
            .verified(|c| verify::head(c, &resp.signed_head))
            .await?;
        self.check_fresh(&head, seen)?;
        self.observe_head(&head).await?;
        Ok(head)
    }

    /// The newest head cosigned by at least `policy.threshold` of the auditors in
    /// `policy.keys` (each cosignature verified over exactly that head), looking
    /// back at most `policy.max_lag_epochs` from the latest head. A head that
    /// independent auditors verified and cosigned is one they all saw extending
    /// the same log, so a client that reads only at such heads cannot be shown
    /// a history the auditors did not see. Fails with
    /// [`ClientError::InvalidArgument`] for an unsatisfiable policy and
    /// [`ClientError::NotCosigned`] when no recent head meets it.
    pub async fn latest_cosigned_head(&self, policy: &CosignerPolicy) -> Result<SignedHead> {
        if policy.threshold == 0 || policy.threshold > policy.keys.len() {
            return Err(ClientError::InvalidArgument(format!(
                "need 1 ≤ threshold ≤ {} auditor keys, got {}",
                policy.keys.len(),
                policy.threshold
            )));
        }
        let latest = self.latest_head().await?;
        let newest = latest.head.epoch;
        let oldest = newest.saturating_sub(policy.max_lag_epochs).max(1);
        for e in (oldest..=newest).rev() {
            let head = if e == newest {
                latest.clone()
            } else {
                self.head(e).await?
            };
            let cosigned = self.cosignatures(e).await?;
            let mut by: Vec<&candor_core::signed::PublicKey> = cosigned
                .iter()
                .map(|c| &c.auditor_key)
                .filter(|k| policy.keys.contains(k))
                .collect();
            by.sort_by_key(|k| k.0);
            by.dedup();
            if by.len() >= policy.threshold {
                return Ok(head);
            }
        }
        Err(ClientError::NotCosigned {
            threshold: policy.threshold,
            from: oldest,
            to: newest,
        })
    }

    /// [`Self::lookup`] at the newest head `policy` accepts
    /// ([`Self::latest_cosigned_head`]).
    pub async fn lookup_cosigned(
        &self,
        label: &[u8],
        policy: &CosignerPolicy,
    ) -> Result<VerifiedLookup> {
        let head = self.latest_cosigned_head(policy).await?;
        self.lookup(label, Some(head.head.epoch)).await
    }

    /// Gossip: a head an auditor (or another client) saw, with the auditor's
    /// cosignature. Checks the head under the configuration chain and the
    /// cosignature by one of `auditors`, then that the head is consistent with
    /// every head this client verified (a consistency proof from the service when
    /// the epochs differ). A service that shows this client a different history
    /// than it showed the auditor is caught here ([`ClientError::Equivocation`]
    /// with evidence, or a failed consistency proof).
    pub async fn gossip(
        &self,
        signed_head: &[u8],
        cosignature: &[u8],
        auditors: &[candor_core::signed::PublicKey],
    ) -> Result<SignedHead> {
        let head = self.verified(|c| verify::head(c, signed_head)).await?;
        let c = verify::cosignature(&head.head, cosignature)?;
        if !auditors.contains(&c.auditor_key) {
            return Err(ClientError::InvalidArgument(
                "the cosignature is not by one of the given auditors".into(),
            ));
        }
        self.observe_head(&head).await?;
        Ok(head)
    }

    /// Consults an auditor: asks the `candor auditor` at `url` (its
    /// `--grpc-listen` address, `candor.v1.Auditor`) for the newest head it
    /// cosigned and takes it in with [`Self::gossip`], checking the cosignature
    /// is `auditor`'s. Call it now and then (or before trusting a lookup): a
    /// service that shows this client another history than the auditor saw fails
    /// here.
    pub async fn consult_auditor(
        &self,
        url: &str,
        auditor: &candor_core::signed::PublicKey,
    ) -> Result<SignedHead> {
        let channel = endpoint_of(url.to_string(), &self.options)?
            .connect()
            .await?;
        let mut c = pb::auditor_client::AuditorClient::new(channel);
        let r = c
            .get_cosigned(pb::GetCosignedRequest { epoch: 0 })
            .await?
            .into_inner();
        self.gossip(
            &r.signed_head,
            &r.cosignature,
            std::slice::from_ref(auditor),
        )
        .await
    }

    /// The epoch of the newest head verified so far, if any.
    async fn seen_epoch(&self) -> Option<u64> {
        self.tracker.lock().await.latest().map(|h| h.head.epoch)
    }

    /// The freshness rule for a head served as the latest, `seen` being the
    /// newest epoch verified before the request was sent.
    fn check_fresh(&self, head: &SignedHead, seen: Option<u64>) -> Result<()> {
        let f = &self.options.freshness;
        verify::freshness(
            head,
            seen,
            now_ms(),
            f.max_age_ms(&self.config),
            f.allowance_ms,
        )
    }

    /// The signed head of `epoch`, verified and checked against the tracker.
    pub async fn head(&self, epoch: u64) -> Result<SignedHead> {
        let resp = self
            .call(|mut c| async move { c.get_epoch(pb::GetEpochRequest { epoch }).await })
            .await?;
        let head = self
            .verified(|c| verify::head_at(c, &resp.signed_head, Some(epoch)))
            .await?;
        self.observe_head(&head).await?;
        Ok(head)
    }

    // ----------------------------------------------------------------- reads

    /// Looks `label` up at `epoch` (`None`: the latest signed epoch) and
    /// verifies the answer ([`verify::lookup`]) and its head's consistency.
    pub async fn lookup(&self, label: &[u8], epoch: Option<u64>) -> Result<VerifiedLookup> {
        let seen = self.seen_epoch().await;
        let req = pb::LookupRequest {
            label: label.to_vec(),
            epoch,
        };
        let resp = self
            .call(|mut c| {
                let r = req.clone();
                async move { c.lookup(r).await }
            })
            .await?;
        let v = self
            .verified(|c| verify::lookup_cached(&self.heads, &self.vrfs, c, label, epoch, &resp))
            .await?;
        if epoch.is_none() {
            self.check_fresh(&v.head, seen)?;
        }
        self.observe_head(&v.head).await?;
        Ok(v)
    }

    /// Every version of `label` at the latest signed epoch, verified.
    pub async fn history(&self, label: &[u8]) -> Result<VerifiedHistory> {
        self.history_at(label, None).await
    }

    /// Every version of `label` up to `epoch` (`None`: the latest signed
    /// epoch), verified. Fetched page by page (docs/protocol.md §6.4.2), so
    /// a history of any length stays within the message limit; against a
    /// server that does not page, the whole history in one proof.
    pub async fn history_at(&self, label: &[u8], epoch: Option<u64>) -> Result<VerifiedHistory> {
        self.history_paged(label, epoch, 0).await
    }

    /// As [`history_at`](Self::history_at), asking for at most
    /// `max_versions` versions a page (0: the server's choice).
    pub async fn history_paged(
        &self,
        label: &[u8],
        epoch: Option<u64>,
        max_versions: u32,
    ) -> Result<VerifiedHistory> {
        let seen = self.seen_epoch().await;
        let page_req = |epoch: Option<u64>, last_version: u64| pb::HistoryRequest {
            label: label.to_vec(),
            epoch,
            page: Some(pb::HistoryPageRequest {
                last_version,
                max_versions,
            }),
        };
        let req = page_req(epoch, 0);
        let resp = self
            .call(|mut c| {
                let r = req.clone();
                async move { c.history(r).await }
            })
            .await?;
        let v = if resp.page.is_empty() && !resp.proof.is_empty() {
            // A server without paging answered with the whole history.
            self.verified(|c| verify::history(c, label, epoch, &resp))
                .await?
        } else {
            let (head, first) = self
                .verified(|c| verify::history_page(c, label, epoch, &resp, None))
                .await?;
            // The latest version is authenticated (it is inside the leaf
            // proven in the map); bounding it bounds the number of pages.
            if first.latest > candor_core::proof::MAX_LABEL_VERSIONS as u64 {
                return Err(crate::error::malformed(
                    "history page",
                    format!(
                        "{} versions exceed the limit {}",
                        first.latest,
                        candor_core::proof::MAX_LABEL_VERSIONS
                    ),
                ));
            }
            let index = first.index;
            let mut chunks = vec![first.versions];
            let mut next = first.next;
            while let Some(anchor) = next {
                let PageAnchor::Leaf { version, .. } = anchor else {
                    break;
                };
                let req = page_req(Some(head.head.epoch), version);
                let resp = self
                    .call(|mut c| {
                        let r = req.clone();
                        async move { c.history(r).await }
                    })
                    .await?;
                let (_, page) = verify::history_page(
                    &*self.chain(),
                    label,
                    Some(head.head.epoch),
                    &resp,
                    Some((&head, &anchor)),
                )?;
                chunks.push(page.versions);
                next = page.next;
            }
            VerifiedHistory {
                head,
                history: CoreHistory {
                    index,
                    versions: chunks.into_iter().rev().flatten().collect(),
                },
            }
        };
        if epoch.is_none() {
            self.check_fresh(&v.head, seen)?;
        }
        self.observe_head(&v.head).await?;
        Ok(v)
    }

    async fn history_with_proof(
        &self,
        label: &[u8],
        epoch: Option<u64>,
    ) -> Result<(VerifiedHistory, Vec<u8>)> {
        let req = pb::HistoryRequest {
            label: label.to_vec(),
            epoch,
            page: None,
        };
        let resp = self
            .call(|mut c| {
                let r = req.clone();
                async move { c.history(r).await }
            })
            .await?;
        let v = self
            .verified(|c| verify::history(c, label, epoch, &resp))
            .await?;
        self.observe_head(&v.head).await?;
        Ok((v, resp.proof))
    }

    // ------------------------------------------------------------- promises

    /// Waits until the SMT for `label` is honoured, polling the latest head
    /// every `poll`.
    ///
    /// Returns [`MergeEvidence`] once a signed epoch with a timestamp ≤ the
    /// merge deadline holds the label with the SMT's leaf (version v with
    /// that leaf hash) in its history chain. Fails with
    /// [`ClientError::BrokenPromise`] as soon as a signed head past the
    /// deadline exists and the last epoch before the deadline does not hold
    /// it; the evidence is verifiable by anyone
    /// ([`BrokenPromiseEvidence::verify`]).
    ///
    /// If the service stops signing epochs altogether this waits forever:
    /// wrap it in `tokio::time::timeout` (a service that signs nothing has
    /// not provably broken its promise, but is down).
    pub async fn wait_merged(
        &self,
        label: &[u8],
        smt: &SignedMutationTimestamp,
        poll: Duration,
    ) -> Result<MergeEvidence> {
        self.verified(|c| c.verify_smt(smt).map_err(vfail("SMT")))
            .await?;
        let deadline = smt.smt.merge_deadline_ms;
        let mut checked_epoch = 0;
        let mut before: Option<SignedHead> = None;
        loop {
            let latest = self.latest_head().await?;
            if latest.head.timestamp_ms > deadline {
                return self.settle_after_deadline(label, smt, before, latest).await;
            }
            if latest.head.epoch > checked_epoch {
                checked_epoch = latest.head.epoch;
                if let Some(e) = self.merged_at(label, smt, latest.head.epoch).await? {
                    return Ok(e);
                }
            }
            before = Some(latest);
            tokio::time::sleep(poll).await;
        }
    }

    /// The history of `label` at `epoch` if it contains the SMT's leaf.
    async fn merged_at(
        &self,
        label: &[u8],
        smt: &SignedMutationTimestamp,
        epoch: u64,
    ) -> Result<Option<MergeEvidence>> {
        let (history, proof) = self.history_with_proof(label, Some(epoch)).await?;
        self.merged_in(label, smt, history, proof)
    }

    fn merged_in(
        &self,
        label: &[u8],
        smt: &SignedMutationTimestamp,
        history: VerifiedHistory,
        history_proof: Vec<u8>,
    ) -> Result<Option<MergeEvidence>> {
        let m = &smt.smt;
        if *history.index() != m.index {
            return Err(ClientError::InvalidArgument(
                "the SMT is not for this label (VRF index differs)".into(),
            ));
        }
        if history.contains(m.version, &m.leaf_hash) {
            return Ok(Some(MergeEvidence {
                label: label.to_vec(),
                smt: smt.clone(),
                history,
                history_proof,
            }));
        }
        Ok(None)
    }

    /// `after` is a head past the deadline; `before`, if any, one at or
    /// before it. Finds the last epoch at or before the deadline by binary
    /// search over epoch heads and decides.
    async fn settle_after_deadline(
        &self,
        label: &[u8],
        smt: &SignedMutationTimestamp,
        before: Option<SignedHead>,
        after: SignedHead,
    ) -> Result<MergeEvidence> {
        let deadline = smt.smt.merge_deadline_ms;
        let (mut lo, mut hi) = (before.map_or(0, |h| h.head.epoch), after.head.epoch);
        let mut hi_head = after;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let h = self.head(mid).await?;
            if h.head.timestamp_ms <= deadline {
                lo = mid;
            } else {
                hi = mid;
                hi_head = h;
            }
        }
        if lo == 0 {
            return Err(ClientError::BrokenPromise(Box::new(
                BrokenPromiseEvidence {
                    label: label.to_vec(),
                    smt: smt.clone(),
                    last_before_deadline: None,
                    first_after_deadline: hi_head,
                    consistency: None,
                },
            )));
        }
        let (history, proof) = self.history_with_proof(label, Some(lo)).await?;
        let before_head = history.head.clone();
        if let Some(e) = self.merged_in(label, smt, history, proof.clone())? {
            return Ok(e);
        }
        let consistency = self
            .consistency_proof(lo, hi, &before_head, &hi_head)
            .await?;
        Err(ClientError::BrokenPromise(Box::new(
            BrokenPromiseEvidence {
                label: label.to_vec(),
                smt: smt.clone(),
                last_before_deadline: Some(HeadWithHistory {
                    head: before_head,
                    history_proof: proof,
                }),
                first_after_deadline: hi_head,
                consistency: Some(consistency),
            },
        )))
    }

    // ---------------------------------------------------------- cosignatures

    /// The C2SP checkpoint of `size` (0: the latest), verified
    /// ([`verify::checkpoint`]); with `old = (size, root)` of a checkpoint verified
    /// before, also the consistency proof from it.
    pub async fn checkpoint(
        &self,
        size: u64,
        old: Option<(u64, candor_core::Digest)>,
    ) -> Result<verify::VerifiedCheckpoint> {
        let old_size = old.map_or(0, |o| o.0);
        let resp = self
            .call(|mut c| async move {
                c.get_checkpoint(pb::GetCheckpointRequest { size, old_size })
                    .await
            })
            .await?;
        let v = self.verified(|c| verify::checkpoint(c, &resp, old)).await?;
        self.observe_head(&v.head).await?;
        Ok(v)
    }

    /// The cosignatures stored for `epoch`, each verified to cover exactly
    /// the epoch's signed head (which is verified and tracked).
    pub async fn cosignatures(&self, epoch: u64) -> Result<Vec<Cosignature>> {
        let head = self.head(epoch).await?;
        let resp = self
            .call(|mut c| async move {
                c.get_cosignatures(pb::GetCosignaturesRequest { epoch })
                    .await
            })
            .await?;
        resp.cosignatures
            .iter()
            .map(|e| verify::cosignature(&head.head, &e.cosignature))
            .collect()
    }

    /// Submits an auditor's cosignature.
    pub async fn submit_cosignature(&self, cosignature: &Cosignature) -> Result<()> {
        let bytes = cosignature.encode();
        self.call(|mut c| {
            let r = pb::CosignRequest {
                cosignature: bytes.clone(),
            };
            async move { c.submit_cosignature(r).await }
        })
        .await?;
        Ok(())
    }

    /// The raw transition proof of `epoch` (verified by the
    /// [`Auditor`](crate::auditor::Auditor), not here).
    pub async fn audit_response(&self, epoch: u64) -> Result<pb::AuditResponse> {
        self.call(|mut c| async move { c.audit(pb::AuditRequest { epoch }).await })
            .await
    }

    /// The raw `GetConfig` answer (unverified; [`verify::config_chain`] checks it),
    /// e.g. to publish it for offline auditors.
    pub async fn config_response(&self) -> Result<pb::GetConfigResponse> {
        self.call(|mut c| async move { c.get_config(pb::GetConfigRequest {}).await })
            .await
    }
}

fn endpoint_of(uri: String, options: &ClientOptions) -> Result<Endpoint> {
    Ok(Endpoint::from_shared(uri)?.connect_timeout(options.connect_timeout))
}

async fn fetch_config(
    channel: Channel,
) -> Result<(KeyTransparencyClient<Channel>, pb::GetConfigResponse)> {
    let rpc = KeyTransparencyClient::new(channel);
    let served = retrying(&rpc, &RetryPolicy::default(), |mut c| async move {
        c.get_config(pb::GetConfigRequest {}).await
    })
    .await?;
    Ok((rpc, served))
}

/// Runs `f` and retries it on `UNAVAILABLE` / `DEADLINE_EXCEEDED` with
/// jittered exponential backoff.
async fn retrying<T, F, Fut>(
    rpc: &KeyTransparencyClient<Channel>,
    policy: &RetryPolicy,
    mut f: F,
) -> Result<T>
where
    F: FnMut(KeyTransparencyClient<Channel>) -> Fut,
    Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
{
    let mut backoff = policy.initial_backoff;
    let mut attempt = 1;
    loop {
        match f(rpc.clone()).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s)
                if attempt < policy.max_attempts
                    && matches!(
                        s.code(),
                        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                    ) =>
            {
                tracing::debug!(code = ?s.code(), message = s.message(), attempt, "retrying");
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(policy.max_backoff);
                attempt += 1;
            }
            Err(s) => return Err(s.into()),
        }
    }
}
