//! # candor-bench: the load generator behind `candor bench`
//!
//! Drives a Candor service over gRPC through the verifying SDK (`candor-client`) and
//! reports what an operator sizes a deployment by: mutation throughput, SMT latency,
//! merge delay, verified lookup throughput and latency, proof size, client verification
//! cost, and errors by gRPC status.
//!
//! ```text
//! candor bench --embedded --duration 30s --json out.json
//! candor bench --target http://10.0.0.5:8700 --token $TOKEN --config-digest $DIGEST \
//!     --mix new=20,update=30,lookup=50 --concurrency 128 --batch 10 --ops 1000000
//! ```
//!
//! The binary flattens [`BenchOptions`] into its `bench` subcommand and calls [`run`].
//!
//! ## What a run does
//!
//! 1. **Connect** `--connections` independent verifying clients (each its own HTTP/2
//!    connection and head tracker), pinned by `--config-digest` / `--pin`, or by the
//!    configuration the first one fetched with `--tofu`. With `--embedded`, start an
//!    in-process `candor dev` first (`candor-node`'s `Node` plus the `candor-api`
//!    service on 127.0.0.1, temporary directory, fresh keys) and pin its configuration.
//! 2. **Preload** `--preload` labels and wait until they are in a signed epoch, so that
//!    updates and lookups have labels to work on. Not measured.
//! 3. **Load**: `--concurrency` tasks each draw an operation by the `--mix` weights:
//!    a PublishBatch of `--batch` items (each a new label or an update of a label this
//!    run published), or a Lookup of such a label, so that items follow the weights.
//!    Until `--duration` has passed or `--ops` operations were issued (a batch of k
//!    items counts k).
//! 4. **Merge**: every `--merge-sample`th SMT is followed: the latest signed head is
//!    polled every quarter epoch (at most 250 ms) and at each new epoch, in
//!    order, a verified lookup (or history, if the label moved on) tells whether the
//!    epoch's map holds the SMT's leaf. The first that does gives the merge delay
//!    (head timestamp − SMT timestamp, both the service's clock); a pending SMT at an
//!    epoch past its deadline is a broken promise. After the load stops, pending
//!    samples are waited for up to the maximum merge delay plus two epochs.
//!
//! ## Verification is not optional
//!
//! Every answer is verified by the SDK before it counts: SMTs by
//! `Client::publish_batch`, lookups by `Client::verify_lookup` plus head
//! consistency (`Client::observe_head`), exactly what `Client::lookup` does, split only
//! to time the verification on its own. A failed verification is counted as an error
//! (`verification_failed`), never skipped; [`BenchReport::security_events`] lets the
//! caller fail the command on it.
//!
//! ## Caveats
//!
//! * The load generator verifies everything, which costs CPU (a VRF verification and a
//!   head signature per lookup, about 0.2 ms): on the same machine as the service it
//!   competes with it. `--embedded` on a 2-core machine measures both together.
//! * With `--attempts 1` (default) nothing is retried, so every `UNAVAILABLE` under
//!   overload shows up in `errors`.

mod embedded;
pub mod options;
pub mod report;
mod runner;
pub mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use candor_client::{Client, ClientError, ClientOptions, PinnedConfig, RetryPolicy};

pub use embedded::EmbeddedService;
pub use options::{BenchOptions, Mix, OpKind, Stop};
pub use report::{BenchReport, Collected, P50P99, RunInfo};
pub use stats::{ErrorCounts, Latencies, LatencySummary, Sizes};

use runner::{LabelPool, Live, Shared, TrackerSettings};

/// Why a run could not be made (failures of individual operations are counted in the
/// report instead).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options do not describe a runnable benchmark.
    #[error("invalid options: {0}")]
    Options(String),
    /// Connecting to or pinning the service failed.
    #[error("connecting to {target}: {source}")]
    Connect {
        /// The endpoint.
        target: String,
        /// The SDK's error.
        #[source]
        source: ClientError,
    },
    /// Publishing the preload labels or waiting for their merge failed.
    #[error("preload failed: {0}")]
    Preload(#[source] ClientError),
    /// The embedded service could not start or stop cleanly.
    #[error("embedded service: {0}")]
    Embedded(String),
    /// Reading the pin or writing the JSON summary failed.
    #[error("{what}: {source}")]
    Io {
        /// Which file.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Encoding the JSON summary failed.
    #[error("encoding the JSON summary: {0}")]
    Json(#[from] serde_json::Error),
    /// A task of the run panicked or was cancelled.
    #[error("a benchmark task failed: {0}")]
    Task(String),
}

/// Runs one benchmark as `opts` describe, prints nothing but the progress bar (on a
/// terminal, unless `--quiet`), writes the JSON summary if `--json` is set, and returns
/// the report (its `Display` is the human summary).
pub async fn run(opts: BenchOptions) -> Result<BenchReport, BenchError> {
    opts.validate().map_err(BenchError::Options)?;
    let report = if opts.embedded {
        let bits = opts.shards.trailing_zeros() as u8;
        let service = EmbeddedService::start(bits, opts.epoch_interval).await?;
        let pin = PinnedConfig::from(service.config.clone());
        let result = run_against(
            &opts,
            &service.endpoint,
            "embedded",
            Some(pin),
            Some(service.token.clone()),
        )
        .await;
        let stopped = service.stop().await;
        let report = result?;
        stopped?;
        report
    } else {
        let pin = pin_of(&opts)?;
        let target = opts.target_or_default().to_string();
        // Like the client commands: the dev token `candor dev` saved, if no --token.
        let token = opts.token.clone().or_else(|| {
            let t = std::fs::read_to_string("candor-data/dev-token").ok()?;
            Some(t.trim().to_owned()).filter(|t| !t.is_empty())
        });
        run_against(&opts, &target, &target, pin, token).await?
    };
    if let Some(path) = &opts.json {
        let json = report.to_json()?;
        std::fs::write(path, json).map_err(|source| BenchError::Io {
            what: format!("writing {}", path.display()),
            source,
        })?;
    }
    Ok(report)
}

/// The pin from `--config-digest` or `--pin`; `None` with `--tofu`.
fn pin_of(opts: &BenchOptions) -> Result<Option<PinnedConfig>, BenchError> {
    if let Some(d) = &opts.config_digest {
        return PinnedConfig::from_hex_digest(d)
            .map(Some)
            .map_err(|e| BenchError::Options(e.to_string()));
    }
    if let Some(path) = &opts.pin {
        let bytes = std::fs::read(path).map_err(|source| BenchError::Io {
            what: format!("reading the pin {}", path.display()),
            source,
        })?;
        return PinnedConfig::from_config_bytes(&bytes)
            .map(Some)
            .map_err(|e| BenchError::Options(e.to_string()));
    }
    Ok(None)
}

/// TLS settings from `--tls-ca/--tls-cert/--tls-key` (`None`: plaintext).
fn client_tls(
    opts: &BenchOptions,
) -> Result<Option<candor_client::tls::ClientTlsConfig>, ClientError> {
    use candor_client::tls::{Certificate, ClientTlsConfig, Identity};
    let read = |p: &std::path::Path| {
        std::fs::read(p)
            .map_err(|e| ClientError::InvalidArgument(format!("cannot read {}: {e}", p.display())))
    };
    let Some(ca) = &opts.tls_ca else {
        if opts.tls_cert.is_some() {
            return Err(ClientError::InvalidArgument(
                "--tls-cert needs --tls-ca".into(),
            ));
        }
        return Ok(None);
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
    if let (Some(c), Some(k)) = (&opts.tls_cert, &opts.tls_key) {
        tls = tls.identity(Identity::from_pem(read(c)?, read(k)?));
    }
    Ok(Some(tls))
}

async fn connect_all(
    opts: &BenchOptions,
    endpoint: &str,
    pin: Option<PinnedConfig>,
    token: Option<&str>,
) -> Result<Vec<Client>, ClientError> {
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: opts.attempts,
            ..RetryPolicy::default()
        },
        ..ClientOptions::default()
    };
    let tls = client_tls(opts)?;
    let connect = |pin: PinnedConfig| {
        let tls = tls.clone();
        async move {
            match tls {
                Some(t) => Client::connect_tls(endpoint.to_string(), t, pin).await,
                None => Client::connect(endpoint.to_string(), pin).await,
            }
        }
    };
    let first_pin = pin.clone();
    let (first, pin) = match first_pin {
        Some(p) => (connect(p.clone()).await?, p),
        None if tls.is_some() => {
            return Err(ClientError::InvalidArgument(
                "trust on first use is not offered over TLS: pin the configuration".into(),
            ));
        }
        None => {
            let (c, config) = Client::connect_tofu(endpoint.to_string()).await?;
            (c, PinnedConfig::from(config))
        }
    };
    let mut clients = vec![first.with_vrf_memo(opts.vrf_memo)];
    for _ in 1..opts.connection_count() {
        let mut c = connect(pin.clone()).await?;
        // One publisher's connections: a label's VRF proof verified through
        // one is not verified again through another.
        c.share_vrf_memo(&clients[0]);
        clients.push(c);
    }
    clients
        .into_iter()
        .map(|c| {
            let c = c.with_options(options.clone());
            match token {
                Some(t) => c.with_token(t),
                None => Ok(c),
            }
        })
        .collect()
}

async fn run_against(
    opts: &BenchOptions,
    endpoint: &str,
    target_name: &str,
    pin: Option<PinnedConfig>,
    token: Option<String>,
) -> Result<BenchReport, BenchError> {
    let writes = opts.mix.new + opts.mix.update > 0 || opts.preload_count() > 0;
    if writes && token.is_none() {
        return Err(BenchError::Options(
            "publishes need a bearer token (--token or CANDOR_TOKEN)".into(),
        ));
    }
    let clients = connect_all(opts, endpoint, pin, token.as_deref())
        .await
        .map_err(|source| BenchError::Connect {
            target: target_name.to_string(),
            source,
        })?;
    let config = clients[0].config().clone();
    let max_batch = clients[0]
        .limits()
        .map_or(1000, |l| l.max_batch_items as usize)
        .max(1);
    if opts.batch > max_batch {
        return Err(BenchError::Options(format!(
            "--batch {} exceeds the service's limit of {max_batch} items",
            opts.batch
        )));
    }
    let epoch = Duration::from_millis(config.epoch_interval_ms.max(1));
    let max_merge = Duration::from_millis(config.max_merge_delay_ms);

    let mut id = [0u8; 4];
    let _ = getrandom::fill(&mut id);
    let shared = Arc::new(Shared {
        clients,
        mix: opts.mix,
        batch: opts.batch,
        value_size: opts.value_size,
        attempts: opts.attempts,
        merge_sample: opts.merge_sample,
        stop: opts.stop(),
        base: Instant::now(),
        start_ns: AtomicU64::new(0),
        issued: AtomicU64::new(0),
        next_label: AtomicU64::new(0),
        run_id: hex::encode(id),
        pool: LabelPool::default(),
        live: Live::default(),
        smt_seq: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
    });

    let bar = runner::progress_bar(shared.stop, opts.quiet);
    let preload = opts.preload_count();
    if preload > 0 {
        let wait = max_merge + 2 * epoch + Duration::from_secs(10);
        runner::preload(&shared, preload, max_batch.min(500), wait, &bar)
            .await
            .map_err(BenchError::Preload)?;
    }

    let (merge_tx, merge_rx) = tokio::sync::mpsc::unbounded_channel();
    let tracker = tokio::spawn(runner::merge_tracker(
        shared.clients[0].clone(),
        merge_rx,
        TrackerSettings {
            poll: (epoch / 4).clamp(Duration::from_millis(20), Duration::from_millis(250)),
            drain: max_merge + 2 * epoch,
            // Heads are small; keeping many means a tracker that falls behind under load
            // still finds the true first epoch of every sample.
            keep_heads: 4096,
        },
        bar.clone(),
    ));

    shared.start_clock();
    let ticking = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn(runner::progress_ticker(
        shared.clone(),
        bar.clone(),
        ticking.clone(),
    ));
    let workers: Vec<_> = (0..opts.concurrency)
        .map(|i| tokio::spawn(runner::worker(i, shared.clone(), merge_tx.clone())))
        .collect();
    drop(merge_tx);
    let mut collected = Collected::default();
    let mut task_error = None;
    for w in futures_util::future::join_all(workers).await {
        match w {
            Ok(c) => collected.merge(&c),
            Err(e) => task_error = Some(e.to_string()),
        }
    }
    let elapsed = shared.elapsed();
    ticking.store(true, Ordering::Relaxed);
    let _ = ticker.await;
    match tracker.await {
        Ok(c) => collected.merge(&c),
        Err(e) => task_error = Some(e.to_string()),
    }
    bar.finish_and_clear();
    if let Some(e) = task_error {
        return Err(BenchError::Task(e));
    }
    collected.counts.elapsed_s = elapsed.as_secs_f64();

    let run = RunInfo {
        target: target_name.to_string(),
        embedded: opts.embedded,
        namespace: config.namespace.clone(),
        config_digest: hex::encode(config.digest()),
        epoch_interval_ms: config.epoch_interval_ms,
        max_merge_delay_ms: config.max_merge_delay_ms,
        shards: 1u32 << config.shard_bits,
        mix: opts.mix,
        concurrency: opts.concurrency,
        connections: shared.clients.len(),
        batch: opts.batch,
        value_size: opts.value_size,
        stop: opts.stop(),
        preload,
        merge_sample: opts.merge_sample,
        vrf_memo: opts.vrf_memo,
        client_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    Ok(BenchReport::build(&collected, run))
}
