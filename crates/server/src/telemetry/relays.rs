//! The relay board: what each relay (`[[relay]]`, `[master]`) and each push (`[[push]]`) is
//! doing, written by their tasks and read by `/admin/relays` and `/metrics`.
//!
//! **Locks:** the board's list and each entry's state are leaf mutexes taken for one push,
//! removal, clone or set (see `crate::sync`); counters are atomics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use serde::Serialize;

use crate::sync::Mutex;

/// Every relay and push of the server.
#[derive(Debug, Default)]
pub(crate) struct RelayBoard {
    list: Mutex<Vec<Arc<RelayStatus>>>,
}

impl RelayBoard {
    /// A new entry, listed until the returned guard is dropped (the task ends).
    pub(crate) fn add(self: &Arc<Self>, kind: Kind, mount: &str, peer: String) -> BoardEntry {
        let status = Arc::new(RelayStatus {
            kind,
            mount: mount.to_string(),
            peer,
            state: Mutex::new(("starting".into(), None, SystemTime::now())),
            connections: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        });
        self.list.lock().push(status.clone());
        BoardEntry {
            board: self.clone(),
            status,
        }
    }

    /// The entries now, in the order they were added.
    pub(crate) fn all(&self) -> Vec<Arc<RelayStatus>> {
        self.list.lock().clone()
    }
}

/// Which way the stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// Pulled from another server into a mount here.
    Pull,
    /// Pushed from a mount here to another server.
    Push,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Pull => "pull",
            Kind::Push => "push",
        }
    }
}

/// One relay or push.
#[derive(Debug)]
pub(crate) struct RelayStatus {
    pub(crate) kind: Kind,
    pub(crate) mount: String,
    /// The other server's URL, without credentials.
    pub(crate) peer: String,
    /// State, last error, and since when the state holds.
    state: Mutex<(String, Option<String>, SystemTime)>,
    /// Connections made to the other server.
    pub(crate) connections: AtomicU64,
    /// Stream bytes pulled (pull) or pushed (push).
    pub(crate) bytes: AtomicU64,
}

impl RelayStatus {
    /// A new state; `error` is kept as the last error until the next one.
    pub(crate) fn set(&self, state: &str, error: Option<String>) {
        let mut s = self.state.lock();
        if s.0 != state {
            s.2 = SystemTime::now();
        }
        s.0 = state.to_string();
        if error.is_some() {
            s.1 = error;
        }
    }

    pub(crate) fn connected(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.set("connected", None);
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.state.lock().0 == "connected"
    }

    /// As `/admin/relays` shows it.
    pub(crate) fn view(&self) -> RelayView {
        let (state, last_error, since) = self.state.lock().clone();
        RelayView {
            kind: self.kind,
            mount: self.mount.clone(),
            peer: self.peer.clone(),
            state,
            seconds_in_state: since.elapsed().unwrap_or_default().as_secs(),
            connections: self.connections.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            last_error,
        }
    }
}

/// A row of `/admin/relays`.
#[derive(Debug, Serialize)]
pub(crate) struct RelayView {
    pub(crate) kind: Kind,
    pub(crate) mount: String,
    /// The upstream of a pull, the target of a push (without credentials).
    pub(crate) peer: String,
    pub(crate) state: String,
    pub(crate) seconds_in_state: u64,
    pub(crate) connections: u64,
    pub(crate) bytes: u64,
    pub(crate) last_error: Option<String>,
}

/// Keeps an entry on the board while its task runs.
#[derive(Debug)]
pub(crate) struct BoardEntry {
    board: Arc<RelayBoard>,
    pub(crate) status: Arc<RelayStatus>,
}

impl Drop for BoardEntry {
    fn drop(&mut self) {
        self.board
            .list
            .lock()
            .retain(|s| !Arc::ptr_eq(s, &self.status));
    }
}
