//! The state every connection shares: configuration, credentials, the mount registry, what
//! the server records about itself, and the shutdown signal.
//!
//! **Invariant:** this module is data (and the one helper that turns a request away); it calls
//! no handler. Handlers get an `Arc<Shared>` (or a `&Shared`) from the accept loop; nothing
//! below the routing layer imports a handler.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::stream::mount::Registry;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::events::EventFeed;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::relays::RelayBoard;
use crate::wire::conn::Connection;
use crate::wire::http::{Request, Response};

/// Credentials in force (configured or generated at start).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The password of user `source` on every mount without its own.
    pub source_password: String,
    /// The admin user name.
    pub admin_user: String,
    /// The admin password.
    pub admin_password: String,
}

/// State shared by every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) credentials: Credentials,
    pub(crate) registry: Arc<Registry>,
    pub(crate) access_log: AccessLog,
    pub(crate) shutdown: CancellationToken,
    pub(crate) started: SystemTime,
    /// The first bound address, for `listenurl`.
    pub(crate) public_port: u16,
    /// Connections accepted.
    pub(crate) connections: AtomicU64,
    /// Listener requests answered with a stream.
    pub(crate) listener_connections: AtomicU64,
    /// Sources accepted.
    pub(crate) source_connections: AtomicU64,
    /// Relay connections made to upstreams (each successful pull).
    pub(crate) relay_connections: AtomicU64,
    pub(crate) sources: std::sync::atomic::AtomicUsize,
    pub(crate) metrics: Metrics,
    /// What every relay and push is doing.
    pub(crate) relays: Arc<RelayBoard>,
    pub(crate) events: EventFeed,
    /// Every connection and listener task, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
}

impl Shared {
    /// Refuse a request with `resp` (HTTP/1.0, as Icecast answers sources and listeners), close
    /// the connection and log it: the one way a source or listener is turned away.
    pub(crate) async fn refuse(
        &self,
        stream: &mut Connection,
        peer: SocketAddr,
        req: &Request,
        resp: Response,
    ) {
        let _ = stream.write_all(&resp.encode("HTTP/1.0", false)).await;
        let _ = stream.shutdown().await;
        self.access_log.log(peer, req, resp.status, 0);
    }
}
