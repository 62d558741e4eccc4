//! Candor's deterministic-simulation seam.
//!
//! A simulation runs a whole cluster (shard and sequencer groups, publishers,
//! epochs) in one process, and a seed replays it to the exact interleaving:
//! every message at the same virtual time, every SMT and head byte-identical.
//! That holds when every source of variation comes from the seed:
//!
//! * **scheduling**: one thread, a tokio current-thread runtime (the test's
//!   part);
//! * **timers**: tokio's paused clock (the test's part);
//! * **wall-clock timestamps** (SMTs, heads): [`wall_ms`];
//! * **threads**: [`spawn_blocking`] runs its work inline rather than on
//!   tokio's blocking pool;
//! * **randomness**: [`fill_random`] (SMT nonces) and [`next_u64`] (openraft's
//!   election timeouts) draw from the seed;
//! * **wake-up order**: [`watch`] wakes receivers in the order they started
//!   waiting (tokio's watch spreads them over 8 notifiers chosen at random),
//!   and every `select!` on these paths is `biased` (tokio's picks a random
//!   first branch).
//!
//! All of it is switched per thread by [`seed_thread`]. A production process
//! never seeds a thread, and then each function here is exactly what it
//! stands for: the operating system's RNG, the system clock, tokio's
//! `spawn_blocking`. The watch channel is the same in both: its wake-up order
//! is fixed everywhere.

pub mod watch;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};

/// The virtual wall clock's reading when a simulation starts, in ms since the
/// Unix epoch (2027-01-15): fixed, so timestamps replay.
pub const SIM_START_MS: u64 = 1_800_000_000_000;

struct Sim {
    rng: StdRng,
    /// The tokio instant [`wall_ms`] first read on this thread (the paused
    /// clock's zero for the timestamps).
    origin: Option<tokio::time::Instant>,
}

thread_local! {
    static SIM: RefCell<Option<Sim>> = const { RefCell::new(None) };
}

/// Makes this thread a simulation thread for `seed` (until [`unseed_thread`]):
/// random draws come from the seed, the wall clock is virtual and blocking
/// work runs inline. For a test on a current-thread runtime with a paused
/// clock.
pub fn seed_thread(seed: u64) {
    SIM.with(|s| {
        *s.borrow_mut() = Some(Sim {
            rng: StdRng::seed_from_u64(seed),
            origin: None,
        })
    });
}

/// Back to the operating system's randomness, clock and threads on this thread.
pub fn unseed_thread() {
    SIM.with(|s| *s.borrow_mut() = None);
}

/// Whether this thread runs a simulation ([`seed_thread`]).
pub fn is_simulated() -> bool {
    SIM.with(|s| s.borrow().is_some())
}

/// The next draw from the seed on a simulation thread; `None` elsewhere (the
/// caller uses the operating system's randomness).
pub fn next_u64() -> Option<u64> {
    SIM.with(|s| s.borrow_mut().as_mut().map(|sim| sim.rng.next_u64()))
}

/// Fills `buf` with random bytes: from the seed on a simulation thread, from
/// the operating system elsewhere.
pub fn fill_random(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    let seeded = SIM.with(|s| {
        s.borrow_mut().as_mut().map(|sim| {
            sim.rng.fill_bytes(buf);
        })
    });
    match seeded {
        Some(()) => Ok(()),
        None => getrandom::fill(buf),
    }
}

/// Wall-clock time in ms since the Unix epoch, for the timestamps the service
/// signs. On a simulation thread: [`SIM_START_MS`] plus the virtual time
/// since this thread first asked (tokio's paused clock). Elsewhere: the
/// system clock (0 if it is before 1970).
pub fn wall_ms() -> u64 {
    let virtual_ms = SIM.with(|s| {
        s.borrow_mut().as_mut().map(|sim| {
            let now = tokio::time::Instant::now();
            let origin = *sim.origin.get_or_insert(now);
            let elapsed = u64::try_from(now.duration_since(origin).as_millis()).unwrap_or(u64::MAX);
            SIM_START_MS.saturating_add(elapsed)
        })
    });
    virtual_ms.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

/// Blocking work that could not finish: its thread panicked or the runtime
/// shut down.
#[derive(Debug, thiserror::Error)]
#[error("blocking task failed: {0}")]
pub struct TaskFailed(String);

/// Runs `f` off the async workers: on tokio's blocking pool, or inline at once
/// on a simulation thread (no other thread may run in a simulation). Like
/// tokio's, the work starts now, not when the result is awaited.
pub fn spawn_blocking<T, F>(f: F) -> Blocking<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if is_simulated() {
        Blocking(BlockingInner::Done(Some(f())))
    } else {
        Blocking(BlockingInner::Task(tokio::task::spawn_blocking(f)))
    }
}

/// The result of [`spawn_blocking`].
#[must_use = "the result of blocking work"]
pub struct Blocking<T>(BlockingInner<T>);

enum BlockingInner<T> {
    Done(Option<T>),
    Task(tokio::task::JoinHandle<T>),
}

impl<T> Future for Blocking<T> {
    type Output = Result<T, TaskFailed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Both variants are Unpin (an Option and a JoinHandle).
        match &mut self.get_mut().0 {
            BlockingInner::Done(v) => match v.take() {
                Some(v) => Poll::Ready(Ok(v)),
                None => Poll::Ready(Err(TaskFailed("polled after completion".into()))),
            },
            BlockingInner::Task(h) => Pin::new(h).poll(cx).map_err(|e| TaskFailed(e.to_string())),
        }
    }
}

impl<T> Unpin for Blocking<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_thread_draws_the_same_sequence() {
        let draw = || -> Vec<u64> {
            let mut v: Vec<u64> = (0..3).filter_map(|_| next_u64()).collect();
            let mut b = [0u8; 8];
            fill_random(&mut b).unwrap();
            v.push(u64::from_le_bytes(b));
            v
        };
        seed_thread(7);
        let a = draw();
        seed_thread(7);
        let b = draw();
        seed_thread(8);
        let c = draw();
        unseed_thread();
        assert!(
            next_u64().is_none(),
            "an unseeded thread has no seed to draw from"
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 4);
    }

    #[test]
    fn the_wall_clock_is_virtual_on_a_simulation_thread() {
        seed_thread(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let (t0, t1, inline) = rt.block_on(async {
            let t0 = wall_ms();
            tokio::time::sleep(std::time::Duration::from_secs(90)).await;
            let t1 = wall_ms();
            let me = std::thread::current().id();
            let inline = spawn_blocking(move || std::thread::current().id() == me)
                .await
                .unwrap();
            (t0, t1, inline)
        });
        unseed_thread();
        assert_eq!(t0, SIM_START_MS);
        assert_eq!(t1, SIM_START_MS + 90_000);
        assert!(inline, "blocking work runs on the simulation thread");
        let real = wall_ms();
        assert!(
            real > 1_700_000_000_000 && real != t1,
            "system clock when unseeded"
        );
    }

    #[tokio::test]
    async fn blocking_work_runs_on_the_pool_in_production() {
        let me = std::thread::current().id();
        let other = spawn_blocking(move || std::thread::current().id() != me)
            .await
            .unwrap();
        assert!(other);
        let failed: Result<(), TaskFailed> = spawn_blocking(|| panic!("boom")).await;
        let err = failed.unwrap_err();
        assert!(err.to_string().contains("blocking task failed"));
    }
}
