//! A watch channel whose receivers wake in the order they started waiting.
//!
//! The API is the subset of `tokio::sync::watch` Candor uses, with the same
//! semantics: a receiver sees each new version once, however many sends it
//! covers; `changed` and `wait_for` fail once every sender is gone and
//! nothing new is left to see; `send` fails when no receiver is left.
//!
//! Why not tokio's: it registers each waiting receiver on one of 8 notifiers
//! chosen at random, so which receiver runs first after a send varies from run
//! to run, and a simulation could not replay ([crate docs](crate)). Here one
//! `Notify` holds every waiter, and `notify_waiters` wakes them oldest first.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use tokio::sync::Notify;

/// Errors, named as tokio's.
pub mod error {
    /// `send` found no receiver; the value is returned.
    #[derive(Debug, PartialEq, Eq, thiserror::Error)]
    #[error("watch channel has no receiver")]
    pub struct SendError<T>(pub T);

    /// Every sender is gone (and nothing new is left to see).
    #[derive(Debug, PartialEq, Eq, Clone, Copy, thiserror::Error)]
    #[error("watch channel closed")]
    pub struct RecvError(pub ());
}

use error::{RecvError, SendError};

/// A borrowed value. Do not hold it across an `.await` (it holds a read
/// lock). Like tokio's, dropping it unused is fine (no `must_use`: a
/// `wait_for` is often awaited for the wait alone).
pub struct Ref<'a, T>(RwLockReadGuard<'a, T>);

impl<T> std::ops::Deref for Ref<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

struct Shared<T> {
    value: RwLock<T>,
    version: AtomicU64,
    notify: Notify,
    senders: AtomicUsize,
    receivers: AtomicUsize,
}

impl<T> Shared<T> {
    fn new(init: T, receivers: usize) -> Arc<Self> {
        Arc::new(Shared {
            value: RwLock::new(init),
            version: AtomicU64::new(0),
            notify: Notify::new(),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(receivers),
        })
    }

    fn read(&self) -> Ref<'_, T> {
        // A panic inside a modify closure leaves a value all the same.
        Ref(self.value.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn closed(&self) -> bool {
        self.senders.load(Ordering::SeqCst) == 0
    }
}

/// The sending half.
pub struct Sender<T>(Arc<Shared<T>>);

/// The receiving half.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The version this receiver has seen.
    seen: u64,
}

/// A channel holding `init`; the receiver has seen it.
pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
    let shared = Shared::new(init, 1);
    (Sender(Arc::clone(&shared)), Receiver { shared, seen: 0 })
}

impl<T> Sender<T> {
    /// A sender with no receiver yet (see [`Sender::subscribe`]).
    pub fn new(init: T) -> Self {
        Sender(Shared::new(init, 0))
    }

    /// Replaces the value and notifies; fails, returning `value`, when no
    /// receiver is left.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.0.receivers.load(Ordering::SeqCst) == 0 {
            return Err(SendError(value));
        }
        self.send_replace(value);
        Ok(())
    }

    /// Replaces the value (receivers or not), notifies, returns the old one.
    pub fn send_replace(&self, value: T) -> T {
        let old = std::mem::replace(&mut *self.write(), value);
        self.announce();
        old
    }

    /// Modifies the value in place and notifies.
    pub fn send_modify(&self, modify: impl FnOnce(&mut T)) {
        self.send_if_modified(|v| {
            modify(v);
            true
        });
    }

    /// Modifies the value in place; notifies only if `modify` returns true.
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
        let modified = modify(&mut self.write());
        if modified {
            self.announce();
        }
        modified
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, T> {
        // A panic inside a modify closure leaves a value all the same.
        self.0.value.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A new version: every waiting receiver wakes, oldest first.
    fn announce(&self) {
        self.0.version.fetch_add(1, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// The current value.
    pub fn borrow(&self) -> Ref<'_, T> {
        self.0.read()
    }

    /// A new receiver that has seen the current value.
    pub fn subscribe(&self) -> Receiver<T> {
        self.0.receivers.fetch_add(1, Ordering::SeqCst);
        Receiver {
            shared: Arc::clone(&self.0),
            seen: self.0.version.load(Ordering::SeqCst),
        }
    }

    /// How many receivers exist.
    pub fn receiver_count(&self) -> usize {
        self.0.receivers.load(Ordering::SeqCst)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::SeqCst);
        Sender(Arc::clone(&self.0))
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last sender: waiting receivers learn the channel closed.
            self.0.notify.notify_waiters();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("watch::Sender")
            .field("version", &self.0.version.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl<T> Receiver<T> {
    /// The current value, without marking it seen.
    pub fn borrow(&self) -> Ref<'_, T> {
        self.shared.read()
    }

    /// The current value, marked seen.
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        // The version first: a send racing this read is seen again, not lost.
        self.seen = self.shared.version.load(Ordering::SeqCst);
        self.shared.read()
    }

    /// Whether a version not yet seen exists; an error once the channel is
    /// closed (as tokio's).
    pub fn has_changed(&self) -> Result<bool, RecvError> {
        if self.shared.closed() {
            return Err(RecvError(()));
        }
        Ok(self.shared.version.load(Ordering::SeqCst) != self.seen)
    }

    /// Waits for a version not yet seen and marks it seen; fails once every
    /// sender is gone and nothing new is left.
    pub async fn changed(&mut self) -> Result<(), RecvError> {
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
            if self.shared.closed() {
                return Err(RecvError(()));
            }
            notified.await;
        }
    }

    /// Waits until the value satisfies `f` (the current value is checked
    /// first) and returns it, marked seen; fails once every sender is gone
    /// without a value that does.
    pub async fn wait_for(
        &mut self,
        mut f: impl FnMut(&T) -> bool,
    ) -> Result<Ref<'_, T>, RecvError> {
        let Receiver { shared, seen } = self;
        loop {
            let notified = shared.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let version = shared.version.load(Ordering::SeqCst);
            *seen = version;
            {
                // Scoped, not dropped: a guard alive at the await would make
                // the future !Send.
                let value = shared.read();
                if f(&value) {
                    return Ok(value);
                }
            }
            if shared.closed() && shared.version.load(Ordering::SeqCst) == version {
                return Err(RecvError(()));
            }
            notified.await;
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, Ordering::SeqCst);
        Receiver {
            shared: Arc::clone(&self.shared),
            seen: self.seen,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("watch::Receiver")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn behaves_as_tokio_s() {
        let (tx, mut rx) = channel(1u32);
        assert_eq!(*rx.borrow(), 1);
        assert_eq!(rx.has_changed(), Ok(false));
        let mut rx2 = tx.subscribe();
        tx.send(2).unwrap();
        assert_eq!(rx.has_changed(), Ok(true));
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), 2);
        assert!(tx.send_if_modified(|v| {
            *v = 3;
            true
        }));
        assert!(!tx.send_if_modified(|_| false));
        // One change seen once, however many sends it covers.
        rx2.changed().await.unwrap();
        assert_eq!(*rx2.borrow(), 3);
        assert_eq!(tx.send_replace(4), 3);
        tx.send_modify(|v| *v += 1);
        assert_eq!(*rx2.wait_for(|v| *v == 5).await.unwrap(), 5);
        let waiter = tokio::spawn(async move { rx2.changed().await });
        tokio::task::yield_now().await;
        drop(tx);
        assert!(
            waiter.await.unwrap().is_err(),
            "closed when the sender is gone"
        );
        rx.changed().await.unwrap();
        assert!(rx.changed().await.is_err());
        assert!(rx.has_changed().is_err());
        let (tx, rx) = channel(0u8);
        drop(rx);
        assert!(tx.send(1).is_err(), "no receiver left");
        let tx = Sender::new(7u8);
        assert_eq!(tx.receiver_count(), 0);
        assert_eq!(*tx.subscribe().borrow(), 7);
    }

    #[tokio::test]
    async fn wait_for_sees_the_current_value_then_waits() {
        let (tx, mut rx) = channel(0u32);
        assert_eq!(*rx.wait_for(|v| *v == 0).await.unwrap(), 0);
        let w = tokio::spawn(async move { *rx.wait_for(|v| *v >= 3).await.unwrap() });
        for i in 1..=3 {
            tokio::task::yield_now().await;
            tx.send(i).unwrap();
        }
        assert_eq!(w.await.unwrap(), 3);
        let (tx, mut rx) = channel(0u32);
        drop(tx);
        assert!(
            rx.wait_for(|v| *v == 1).await.is_err(),
            "closed, never true"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn receivers_wake_in_the_order_they_waited() {
        let (tx, rx) = channel(0u32);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (mut rx, order) = (rx.clone(), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                rx.changed().await.unwrap();
                order.lock().unwrap().push(i);
            }));
            // Each waits before the next starts.
            tokio::task::yield_now().await;
        }
        tx.send(1).unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..16).collect::<Vec<_>>());
    }
}
