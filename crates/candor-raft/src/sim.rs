//! Deterministic simulation support: openraft's runtime with a seedable RNG.
//!
//! A simulation replays a seed to the exact interleaving when four things
//! hold:
//! * every task runs on one thread: a tokio current-thread runtime;
//! * time is virtual: tokio's paused clock, so timers fire in a fixed order
//!   and waits take no wall time;
//! * store I/O runs inline, not on OS threads: [`crate::IoMode::Inline`];
//! * every random draw comes from the seed: the fault network's RNG, and
//!   openraft's draws (election timeouts, tick jitter) through [`SimRuntime`].
//!
//! [`SimRuntime`] is the runtime of [`crate::TypeConfig`] everywhere. It is
//! tokio's, with two exceptions:
//! * `thread_rng`: a thread seeded with [`seed_thread`] draws from that
//!   seed; any other thread draws from the operating system, as before. A
//!   production process never seeds a thread.
//! * the watch channel (openraft's metrics and its internal notifications):
//!   [`SimWatch`]. tokio's watch registers each waiting receiver on one of 8
//!   notifiers chosen at random, so the order in which receivers wake varies
//!   from run to run. `SimWatch` keeps one notifier, and waiters wake in the
//!   order they started waiting.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use openraft::rt::OptionalSync;
use openraft::rt::watch::{RecvError, SendError, Watch, WatchReceiver, WatchSender};

use openraft::OptionalSend;
use openraft::rt::AsyncRuntime;
use openraft_rt_tokio::TokioRuntime;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

thread_local! {
    static SIM_RNG: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Makes openraft's random draws on this thread come from `seed` (until
/// [`unseed_thread`]). For a simulation on a current-thread runtime.
pub fn seed_thread(seed: u64) {
    SIM_RNG.with(|r| *r.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

/// Back to operating-system randomness on this thread.
pub fn unseed_thread() {
    SIM_RNG.with(|r| *r.borrow_mut() = None);
}

/// Tokio, with openraft's RNG seedable per thread (see the module docs).
#[derive(Debug)]
pub struct SimRuntime {
    inner: TokioRuntime,
}

impl AsyncRuntime for SimRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = StdRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        let seeded = SIM_RNG.with(|r| r.borrow_mut().as_mut().map(|rng| rng.random::<u64>()));
        match seeded {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng(),
        }
    }

    type Mpsc = <TokioRuntime as AsyncRuntime>::Mpsc;
    type Watch = SimWatch;
    type Oneshot = <TokioRuntime as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::Mutex<T>;

    fn new(threads: usize) -> Self {
        SimRuntime {
            inner: TokioRuntime::new(threads),
        }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.inner.block_on(future)
    }

    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, std::io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        TokioRuntime::spawn_blocking(f)
    }
}

/// A watch channel whose receivers wake in a fixed order (see the module
/// docs). Same semantics as tokio's: `send` fails with no receiver left,
/// `changed` reports each new version once and fails when every sender is
/// gone.
pub struct SimWatch;

struct WatchShared<T> {
    value: RwLock<T>,
    version: AtomicU64,
    notify: tokio::sync::Notify,
    senders: AtomicUsize,
    receivers: AtomicUsize,
}

impl<T> WatchShared<T> {
    fn read(&self) -> RwLockReadGuard<'_, T> {
        // A panic while a modify closure ran: the value is still a value.
        self.value.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending half of a [`SimWatch`].
pub struct SimWatchSender<T>(Arc<WatchShared<T>>);

/// The receiving half of a [`SimWatch`].
pub struct SimWatchReceiver<T> {
    shared: Arc<WatchShared<T>>,
    seen: u64,
}

impl<T> Clone for SimWatchSender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(&self.0))
    }
}

impl<T> Drop for SimWatchSender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last sender: waiting receivers learn the channel closed.
            self.0.notify.notify_waiters();
        }
    }
}

impl<T> Clone for SimWatchReceiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, Ordering::SeqCst);
        Self {
            shared: Arc::clone(&self.shared),
            seen: self.seen,
        }
    }
}

impl<T> Drop for SimWatchReceiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Watch for SimWatch {
    type Sender<T: OptionalSend + OptionalSync> = SimWatchSender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = SimWatchReceiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = RwLockReadGuard<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (Self::Sender<T>, Self::Receiver<T>) {
        let shared = Arc::new(WatchShared {
            value: RwLock::new(init),
            version: AtomicU64::new(0),
            notify: tokio::sync::Notify::new(),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
        });
        (
            SimWatchSender(Arc::clone(&shared)),
            SimWatchReceiver { shared, seen: 0 },
        )
    }
}

impl<T: OptionalSend + OptionalSync> WatchSender<SimWatch, T> for SimWatchSender<T> {
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.0.receivers.load(Ordering::SeqCst) == 0 {
            return Err(SendError(value));
        }
        self.send_if_modified(|v| {
            *v = value;
            true
        });
        Ok(())
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        let modified = {
            let mut v = self.0.value.write().unwrap_or_else(|p| p.into_inner());
            modify(&mut v)
        };
        if modified {
            self.0.version.fetch_add(1, Ordering::SeqCst);
            self.0.notify.notify_waiters();
        }
        modified
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.0.read()
    }

    fn subscribe(&self) -> SimWatchReceiver<T> {
        self.0.receivers.fetch_add(1, Ordering::SeqCst);
        SimWatchReceiver {
            shared: Arc::clone(&self.0),
            seen: self.0.version.load(Ordering::SeqCst),
        }
    }
}

impl<T: OptionalSend + OptionalSync> WatchReceiver<SimWatch, T> for SimWatchReceiver<T> {
    async fn changed(&mut self) -> Result<(), RecvError> {
        loop {
            // Registered before the check, so a send in between is not missed.
            let notified = self.shared.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let version = self.shared.version.load(Ordering::SeqCst);
            if version != self.seen {
                self.seen = version;
                return Ok(());
            }
            if self.shared.senders.load(Ordering::SeqCst) == 0 {
                return Err(RecvError(()));
            }
            notified.await;
        }
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.shared.read()
    }

    fn borrow_and_update(&mut self) -> RwLockReadGuard<'_, T> {
        // The version first: a send racing this read is seen again, not lost.
        self.seen = self.shared.version.load(Ordering::SeqCst);
        self.shared.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng as _;

    #[test]
    fn a_seeded_thread_draws_the_same_sequence() {
        let draw = || -> Vec<u64> {
            (0..4)
                .map(|_| SimRuntime::thread_rng().next_u64())
                .collect()
        };
        seed_thread(7);
        let a = draw();
        seed_thread(7);
        let b = draw();
        seed_thread(8);
        let c = draw();
        unseed_thread();
        let d = draw();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[tokio::test]
    async fn the_watch_behaves_as_tokio_s() {
        let (tx, mut rx) = SimWatch::channel(1u32);
        assert_eq!(*rx.borrow_watched(), 1);
        let mut rx2 = tx.subscribe();
        tx.send(2).unwrap();
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), 2);
        assert!(tx.send_if_modified(|v| {
            *v = 3;
            true
        }));
        assert!(!tx.send_if_modified(|_| false));
        // One change seen once, however many sends it covers.
        rx2.changed().await.unwrap();
        assert_eq!(*rx2.borrow_watched(), 3);
        let waiter = tokio::spawn(async move { rx2.changed().await });
        tokio::task::yield_now().await;
        drop(tx);
        assert!(
            waiter.await.unwrap().is_err(),
            "closed when the sender is gone"
        );
        rx.changed().await.unwrap();
        assert!(rx.changed().await.is_err());
        let (tx, rx) = SimWatch::channel(0u8);
        drop(rx);
        assert!(tx.send(1).is_err(), "no receiver left");
    }
}
