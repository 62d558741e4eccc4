//! Deterministic simulation support: openraft's runtime on Candor's
//! simulation seam ([`candor_sim`]).
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
//!   [`candor_sim::watch`]. tokio's watch registers each waiting receiver on
//!   one of 8 notifiers chosen at random, so the order in which receivers wake
//!   varies from run to run; this one wakes them in the order they started
//!   waiting.

use std::future::Future;
use std::time::Duration;

use openraft::rt::OptionalSync;
use openraft::rt::watch::{RecvError, SendError, Watch, WatchReceiver, WatchSender};

use candor_sim::watch as sim_watch;
pub use candor_sim::{is_simulated, seed_thread, unseed_thread};
use openraft::OptionalSend;
use openraft::rt::AsyncRuntime;
use openraft_rt_tokio::TokioRuntime;
use rand::SeedableRng;
use rand::rngs::StdRng;

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
        match candor_sim::next_u64() {
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
        // Started now (inline on a simulation thread), awaited later.
        let work = candor_sim::spawn_blocking(f);
        async move { work.await.map_err(std::io::Error::other) }
    }
}

/// openraft's watch, on [`candor_sim::watch`] (receivers wake in the order
/// they waited; see the module docs).
pub struct SimWatch;

impl Watch for SimWatch {
    type Sender<T: OptionalSend + OptionalSync> = sim_watch::Sender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = sim_watch::Receiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = sim_watch::Ref<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (Self::Sender<T>, Self::Receiver<T>) {
        sim_watch::channel(init)
    }
}

impl<T: OptionalSend + OptionalSync> WatchSender<SimWatch, T> for sim_watch::Sender<T> {
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        sim_watch::Sender::send(self, value).map_err(|e| SendError(e.0))
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        sim_watch::Sender::send_if_modified(self, modify)
    }

    fn borrow_watched(&self) -> sim_watch::Ref<'_, T> {
        sim_watch::Sender::borrow(self)
    }

    fn subscribe(&self) -> sim_watch::Receiver<T> {
        sim_watch::Sender::subscribe(self)
    }
}

impl<T: OptionalSend + OptionalSync> WatchReceiver<SimWatch, T> for sim_watch::Receiver<T> {
    async fn changed(&mut self) -> Result<(), RecvError> {
        sim_watch::Receiver::changed(self)
            .await
            .map_err(|_| RecvError(()))
    }

    fn borrow_watched(&self) -> sim_watch::Ref<'_, T> {
        sim_watch::Receiver::borrow(self)
    }

    fn borrow_and_update(&mut self) -> sim_watch::Ref<'_, T> {
        sim_watch::Receiver::borrow_and_update(self)
    }
}

#[cfg(test)]
mod tests {
    //! The adapters only: the watch's and the seed's own behaviour are tested in
    //! candor-sim.
    use super::*;
    use rand::Rng as _;

    #[test]
    fn openraft_draws_from_the_thread_s_seed() {
        let draw = || SimRuntime::thread_rng().next_u64();
        seed_thread(7);
        let a = draw();
        seed_thread(7);
        assert_eq!(draw(), a);
        unseed_thread();
        assert_ne!(draw(), a);
    }

    #[tokio::test]
    async fn openraft_s_watch_calls_reach_the_channel() {
        let (tx, mut rx) = SimWatch::channel(1u32);
        let mut rx2 = WatchSender::subscribe(&tx);
        WatchSender::send(&tx, 2).unwrap();
        WatchReceiver::changed(&mut rx).await.unwrap();
        assert_eq!(*WatchReceiver::borrow_and_update(&mut rx), 2);
        assert!(!WatchSender::send_if_modified(&tx, |_| false));
        assert_eq!(*WatchSender::borrow_watched(&tx), 2);
        assert_eq!(*WatchReceiver::borrow_watched(&rx2), 2);
        drop(tx);
        WatchReceiver::changed(&mut rx2).await.unwrap();
        assert!(WatchReceiver::changed(&mut rx2).await.is_err(), "closed");
    }
}
