//! Who waits for which request to settle (`GET /api/requests/{id}?wait_ms=…` and
//! `POST … Prefer: wait=N`): each waiter is woken by a change of its own request only. Waiting
//! on the store's broadcast of every change instead woke each of N waiters at every change of
//! any request, and each looked its request up again: N times the work per round trip.

use super::key::Key;
use super::{RequestRecord, Status, Store};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;

impl Store {
    /// Waits until the request is no longer pending or `wait` has passed; returns its latest state.
    pub async fn wait_for_reply(&self, id: &str, wait: Duration) -> Option<RequestRecord> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut waiting = self.waiters.wait(Key::parse(id));
            let record = self.get(id)?;
            if record.status != Status::Pending {
                return Some(record);
            }
            if tokio::time::timeout_at(deadline, waiting.changed())
                .await
                .is_err()
            {
                return Some(record);
            }
        }
    }
}

/// The waiters of each request; an entry lives while someone waits.
#[derive(Debug, Default)]
pub(super) struct Waiters(Mutex<HashMap<Key, Vec<oneshot::Sender<()>>>>);

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Vec<oneshot::Sender<()>>>> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Starts waiting for the next change of `key`'s request. Register before looking at the
    /// request, so that a change between the look and the wait is not missed.
    pub(super) fn wait(&self, key: Key) -> Wait<'_> {
        let (wake, woken) = oneshot::channel();
        self.lock().entry(key.clone()).or_default().push(wake);
        Wait {
            waiters: self,
            key,
            woken: Some(woken),
        }
    }

    /// `key`'s request changed: wakes whoever waits for it.
    pub(super) fn wake(&self, key: &Key) {
        let woken = self.lock().remove(key);
        for wake in woken.into_iter().flatten() {
            let _ = wake.send(());
        }
    }

    /// Whether anyone waits at all (most changes have no waiter: no need to look up their key).
    pub(super) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// One waiter; dropping it (woken, timed out or cancelled) removes what it left in [`Waiters`].
#[derive(Debug)]
pub(super) struct Wait<'a> {
    waiters: &'a Waiters,
    key: Key,
    woken: Option<oneshot::Receiver<()>>,
}

impl Wait<'_> {
    /// Until the request changes.
    pub(super) async fn changed(&mut self) {
        if let Some(woken) = self.woken.as_mut() {
            let _ = woken.await;
        }
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        // Closes this waiter's channel, so its sender below reads as closed.
        self.woken.take();
        let mut waiting = self.waiters.lock();
        if let Some(wakes) = waiting.get_mut(&self.key) {
            wakes.retain(|wake| !wake.is_closed());
            if wakes.is_empty() {
                waiting.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Key {
        Key::parse(text)
    }

    #[tokio::test]
    async fn a_change_wakes_the_waiters_of_that_request_only() {
        let waiters = Waiters::default();
        let mut mine = waiters.wait(key("a"));
        let mut other = waiters.wait(key("b"));
        waiters.wake(&key("a"));
        tokio::time::timeout(Duration::from_secs(5), mine.changed())
            .await
            .expect("woken");
        assert!(
            tokio::time::timeout(Duration::from_millis(20), other.changed())
                .await
                .is_err(),
            "another request's change woke it"
        );
    }

    #[test]
    fn a_waiter_that_gives_up_leaves_nothing_behind() {
        let waiters = Waiters::default();
        let first = waiters.wait(key("a"));
        let second = waiters.wait(key("a"));
        drop(first);
        assert!(!waiters.is_empty(), "the second still waits");
        drop(second);
        assert!(waiters.is_empty());
    }
}
