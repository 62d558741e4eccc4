//! The runtime the bindings own, and the panic guard every exported call
//! goes through.
//!
//! The SDK is async (tokio + tonic); the foreign API is blocking, which is
//! what Python scripts expect and what Swift/Kotlin callers wrap in their own
//! concurrency (call it off the main thread). One small multi-threaded
//! runtime per process serves every client: tonic's connection tasks run on
//! it, and each call blocks the calling (foreign) thread on its future.
//! Python's ctypes releases the GIL during the call, so Python threads
//! calling concurrently really run concurrently.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use tokio::runtime::Runtime;

use crate::error::{CandorError, Result};

/// Worker threads of the shared runtime. They only drive I/O and timers;
/// verification runs on the calling thread's `block_on`.
const WORKERS: usize = 2;

fn runtime() -> Result<&'static Runtime> {
    static RT: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("candor-ffi")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))
    })
    .as_ref()
    .map_err(|e| CandorError::Internal { detail: e.clone() })
}

fn panic_detail(p: Box<dyn Any + Send>) -> String {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_owned());
    format!("panic in candor-ffi: {msg}")
}

/// Runs `f`, turning a panic into [`CandorError::Internal`]: no unwinding
/// ever reaches foreign code (uniffi would catch it too, but Swift turns its
/// own panic report into a `fatalError`, i.e. a crash).
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(CandorError::Internal {
            detail: panic_detail(p),
        })
    })
}

/// Runs `fut` to completion on the shared runtime, under [`guard`].
pub(crate) fn block_on<T>(fut: impl Future<Output = Result<T>>) -> Result<T> {
    guard(|| {
        let rt = runtime()?;
        if tokio::runtime::Handle::try_current().is_ok() {
            // Only possible if foreign code calls back into us from inside a
            // runtime thread; tokio would panic.
            return Err(CandorError::Internal {
                detail: "blocking candor call made from inside an async runtime".into(),
            });
        }
        rt.block_on(fut)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_internal_errors() {
        let r: Result<()> = guard(|| panic!("boom"));
        match r {
            Err(CandorError::Internal { detail }) => assert!(detail.contains("boom")),
            other => panic!("unexpected {other:?}"),
        }
        let r: Result<()> = block_on(async { panic!("async boom") });
        assert!(matches!(r, Err(CandorError::Internal { .. })));
    }

    #[test]
    fn block_on_returns_values() {
        assert_eq!(block_on(async { Ok(7) }), Ok(7));
    }
}
