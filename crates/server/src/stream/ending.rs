//! Why a source or a listener ended: typed, tagged by where the cause came from, logged with
//! words and counted in `/metrics` by reason (`agora_source_ends_total`,
//! `agora_listener_ends_total`).

use std::fmt;
use std::time::Duration;

/// Where the cause of an ending came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The other end of the connection: it closed, reset, or read too slowly.
    Peer,
    /// The bytes: a stream or a body encoding the server refuses.
    Format,
    /// An operator, through the admin API.
    Admin,
    /// The server is shutting down.
    Shutdown,
    /// A time limit passed.
    Timeout,
    /// The mount's source: it went away for good, or its stream changed under a web player.
    Source,
}

impl Origin {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Origin::Peer => "peer",
            Origin::Format => "format",
            Origin::Admin => "admin",
            Origin::Shutdown => "shutdown",
            Origin::Timeout => "timeout",
            Origin::Source => "source",
        }
    }
}

/// Why a source's connection ended.
#[derive(Debug)]
pub(crate) enum SourceEnd {
    /// The source closed its connection, or its upload (a PUT with a length) was complete.
    Finished,
    /// Reading from the source failed.
    Io(std::io::Error),
    /// The chunked body encoding was broken.
    BadChunking(String),
    /// The demuxer refused the stream (not recoverable: a WebM it cannot follow, headers too
    /// large).
    Rejected(agora_format::FormatError),
    /// No byte arrived for this long.
    Timeout(Duration),
    /// `/admin/killsource`.
    Killed,
    /// The server is shutting down.
    Shutdown,
    /// An on-demand relay had no listener for this long.
    Idle(Duration),
}

impl SourceEnd {
    pub(crate) fn origin(&self) -> Origin {
        match self {
            SourceEnd::Finished | SourceEnd::Io(_) => Origin::Peer,
            SourceEnd::BadChunking(_) | SourceEnd::Rejected(_) => Origin::Format,
            SourceEnd::Timeout(_) => Origin::Timeout,
            SourceEnd::Killed => Origin::Admin,
            SourceEnd::Shutdown => Origin::Shutdown,
            SourceEnd::Idle(_) => Origin::Timeout,
        }
    }

    /// The metrics label.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            SourceEnd::Finished => "finished",
            SourceEnd::Io(_) => "io_error",
            SourceEnd::BadChunking(_) => "bad_chunking",
            SourceEnd::Rejected(_) => "rejected",
            SourceEnd::Timeout(_) => "timeout",
            SourceEnd::Killed => "killed",
            SourceEnd::Shutdown => "shutdown",
            SourceEnd::Idle(_) => "idle",
        }
    }

    /// An ending nobody needs to look at (the source or the server meant it).
    pub(crate) fn is_orderly(&self) -> bool {
        matches!(
            self,
            SourceEnd::Finished | SourceEnd::Shutdown | SourceEnd::Idle(_)
        )
    }
}

impl fmt::Display for SourceEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceEnd::Finished => f.write_str("the source ended its stream"),
            SourceEnd::Io(e) => write!(f, "{e}"),
            SourceEnd::BadChunking(e) => write!(f, "{e}"),
            // The one limit an operator may have to raise for a real stream: named.
            SourceEnd::Rejected(e @ agora_format::FormatError::ElementTooLarge { .. }) => {
                write!(f, "stream rejected: {e} (the mount's max-element-size)")
            }
            SourceEnd::Rejected(e) => write!(f, "stream rejected: {e}"),
            SourceEnd::Timeout(d) => write!(f, "no data for {} s", d.as_secs()),
            SourceEnd::Killed => f.write_str("removed by the admin (killsource)"),
            SourceEnd::Shutdown => f.write_str("the server is shutting down"),
            SourceEnd::Idle(d) => write!(f, "no listener for {} s", d.as_secs()),
        }
    }
}

/// Why a listener's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListenerEnd {
    /// The listener closed its connection, or a write to it failed.
    Gone,
    /// It fell more than `queue-size` behind (lag policy `disconnect`).
    Lagged,
    /// `/admin/killclient`.
    Killed,
    /// The mount closed: its source did not come back within the grace period.
    MountClosed,
    /// The server is shutting down.
    Shutdown,
    /// A web page's player reached the end of its source's stream (it reconnects).
    NewStream,
    /// A write took nothing for `send-timeout-secs`: the client stopped reading.
    Stalled,
    /// Its mount closed and a write was still blocked when the mount's `drain-secs` ended.
    Undrained,
}

impl ListenerEnd {
    pub(crate) fn origin(self) -> Origin {
        match self {
            ListenerEnd::Gone | ListenerEnd::Lagged => Origin::Peer,
            ListenerEnd::Killed => Origin::Admin,
            ListenerEnd::MountClosed | ListenerEnd::NewStream => Origin::Source,
            ListenerEnd::Shutdown => Origin::Shutdown,
            ListenerEnd::Stalled | ListenerEnd::Undrained => Origin::Timeout,
        }
    }

    /// The metrics label.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            ListenerEnd::Gone => "gone",
            ListenerEnd::Lagged => "lagged",
            ListenerEnd::Killed => "killed",
            ListenerEnd::MountClosed => "mount_closed",
            ListenerEnd::Shutdown => "shutdown",
            ListenerEnd::NewStream => "new_stream",
            ListenerEnd::Stalled => "stalled",
            ListenerEnd::Undrained => "undrained",
        }
    }
}

impl fmt::Display for ListenerEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListenerEnd::Gone => "listener left",
            ListenerEnd::Lagged => "listener cut off: fell more than queue-size behind",
            ListenerEnd::Killed => "listener removed by the admin",
            ListenerEnd::MountClosed => "listener closed: mount ended",
            ListenerEnd::Shutdown => "listener closed: server shutting down",
            ListenerEnd::NewStream => "web player ended at a new stream",
            ListenerEnd::Stalled => "listener cut off: it took nothing for send-timeout-secs",
            ListenerEnd::Undrained => {
                "listener cut off: its mount ended and it did not take the rest within drain-secs"
            }
        })
    }
}
