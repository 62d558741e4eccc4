//! The process-wide FoundationDB client network thread.
//!
//! The C API allows selecting the API version and setting up the network once per
//! process, runs the network on one dedicated thread, cannot restart it once stopped, and
//! requires it to be stopped and joined before the process exits normally. Hence: a
//! `OnceLock` around the start, the stop handle in a static, and an `atexit` hook.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

use foundationdb::api::{FdbApiBuilder, NetworkStop};

use crate::error::FdbStoreError;

static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
static RUNNING: Mutex<Option<(NetworkStop, JoinHandle<()>)>> = Mutex::new(None);
static STOPPED: AtomicBool = AtomicBool::new(false);

/// Starts the FoundationDB client network (API version 7.3) if this process has not yet:
/// idempotent and thread-safe; [`crate::FdbStore::open`] calls it. Fails if the client
/// library is missing or older than 7.3, if other code in the process already selected an
/// API version through the `foundationdb` crate, or after [`stop_network`].
pub fn start_network() -> Result<(), FdbStoreError> {
    if STOPPED.load(Ordering::Acquire) {
        return Err(FdbStoreError::Network(
            "stopped by stop_network(); FoundationDB cannot restart it in this process".into(),
        ));
    }
    STARTED
        .get_or_init(boot)
        .clone()
        .map_err(FdbStoreError::Network)
}

/// Stops the network thread and waits for it. Every FoundationDB operation of this
/// process fails afterwards, and the network cannot be started again. Called
/// automatically at normal process exit; call it earlier only for an orderly shutdown
/// after every store is dropped. A no-op when the network is not running.
pub fn stop_network() -> Result<(), FdbStoreError> {
    // try_lock: this also runs from the atexit hook, where blocking on a lock held by a
    // thread that no longer runs would hang the exit.
    let running = match RUNNING.try_lock() {
        Ok(mut g) => g.take(),
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take(),
        Err(std::sync::TryLockError::WouldBlock) => {
            return Err(FdbStoreError::Network("stop already in progress".into()));
        }
    };
    let Some((stop, thread)) = running else {
        return Ok(());
    };
    STOPPED.store(true, Ordering::Release);
    stop.stop()
        .map_err(|e| FdbStoreError::Network(format!("stop: {e}")))?;
    thread
        .join()
        .map_err(|_| FdbStoreError::Network("network thread panicked".into()))
}

extern "C" fn stop_network_at_exit() {
    if let Err(e) = stop_network() {
        eprintln!("candor-store-fdb: stopping the FoundationDB network at exit: {e}");
    }
}

fn boot() -> Result<(), String> {
    // The binding panics (rather than erroring) when an API version was already selected
    // in this process; turn that into an error.
    let builder = std::panic::catch_unwind(|| FdbApiBuilder::default().build())
        .map_err(|_| {
            "the FoundationDB API version was already selected in this process by other \
             code; let candor_store_fdb::start_network start the network"
                .to_string()
        })?
        .map_err(|e| {
            format!(
                "selecting FoundationDB API version {}: {e} (is libfdb_c 7.3 or newer installed?)",
                crate::API_VERSION
            )
        })?;
    let (runner, wait) = builder
        .build()
        .map_err(|e| format!("setting up the FoundationDB network: {e}"))?;
    let thread = std::thread::Builder::new()
        .name("fdb-network".into())
        .spawn(move || {
            // SAFETY: `run` may be called once per process; `boot` runs once, under the
            // `STARTED` OnceLock.
            if let Err(e) = unsafe { runner.run() } {
                eprintln!("candor-store-fdb: FoundationDB network thread failed: {e}");
            }
        })
        .map_err(|e| format!("spawning the FoundationDB network thread: {e}"))?;
    let stop = wait.wait();
    *RUNNING.lock().unwrap_or_else(|p| p.into_inner()) = Some((stop, thread));
    // Registered after libfdb_c was loaded, so (LIFO) it runs before the library's own
    // exit-time destructors, which crash if the network thread still runs.
    // SAFETY: registers a plain `extern "C" fn` that captures nothing.
    if unsafe { libc::atexit(stop_network_at_exit) } != 0 {
        eprintln!("candor-store-fdb: atexit registration failed; call stop_network() before exit");
    }
    Ok(())
}
