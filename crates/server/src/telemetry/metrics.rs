//! `/metrics`: Prometheus metrics through `prometheus-client` (OpenMetrics text, which
//! Prometheus scrapes natively).
//!
//! Server-wide counters live here as `prometheus-client` metrics. Per-mount numbers are not
//! copied into metric objects as they change: a [`Collector`] reads the mounts' own atomics at
//! scrape time, so the listener hot path pays nothing for metrics and a closed mount's series
//! disappear with it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::stream::ending::{ListenerEnd, SourceEnd};
use crate::stream::mount;
use crate::telemetry::edges::{EdgeBoard, EdgeView};
use crate::telemetry::relays::{RelayBoard, RelayStatus};

/// Labels of a request counter: the response status.
pub(crate) type StatusLabels = Vec<(&'static str, String)>;

/// Labels of an ending counter: `reason` and `origin` (see [`crate::stream::ending`]).
type EndLabels = Vec<(&'static str, &'static str)>;

/// The server's metrics registry and the counters code updates directly.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Finished requests by status (listeners count when they leave); counted by the access
    /// log, which every finished request passes.
    pub(crate) requests: Family<StatusLabels, Counter>,
    /// Accepted TCP connections.
    pub(crate) connections: Counter,
    /// Runtime stalls the watchdog saw.
    pub(crate) runtime_stalls: Counter,
    /// TLS handshakes that failed or timed out.
    pub(crate) tls_handshake_failures: Counter,
    /// Connections closed at once: their address had `max-pending-per-ip` unfinished heads.
    pub(crate) refused_pending: Counter,
    /// Slides stored (a resend of a known key is not counted).
    pub(crate) slides_stored: Counter,
    /// Bytes of the slides stored.
    pub(crate) slide_bytes_stored: Counter,
    source_ends: Family<EndLabels, Counter>,
    listener_ends: Family<EndLabels, Counter>,
}

pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Metrics {
    pub(crate) fn new(
        mounts: Arc<mount::Registry>,
        relays: Arc<RelayBoard>,
        edges: Arc<EdgeBoard>,
        started: SystemTime,
    ) -> Metrics {
        let mut registry = Registry::with_prefix("agora");
        let requests = Family::<StatusLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Finished HTTP requests by response status (a listener counts when it leaves)",
            requests.clone(),
        );
        let connections = Counter::default();
        registry.register(
            "connections",
            "TCP connections accepted",
            connections.clone(),
        );
        let runtime_stalls = Counter::default();
        registry.register(
            "runtime_stalls",
            "Times the async runtime ran no heartbeat for longer than the watchdog's limit (5 s)",
            runtime_stalls.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes on HTTPS sockets that failed or did not complete in the header timeout",
            tls_handshake_failures.clone(),
        );
        let refused_pending = Counter::default();
        registry.register(
            "connections_refused_pending",
            "Connections closed at once because their address had max-pending-per-ip requests still unfinished",
            refused_pending.clone(),
        );
        let slides_stored = Counter::default();
        registry.register(
            "slides_stored",
            "Slide images stored (a resend with a known key is not counted)",
            slides_stored.clone(),
        );
        let slide_bytes_stored = Counter::default();
        registry.register(
            "slide_bytes_stored",
            "Bytes of the slide images stored",
            slide_bytes_stored.clone(),
        );
        let source_ends = Family::<EndLabels, Counter>::default();
        registry.register(
            "source_ends",
            "Source connections ended, by reason and by where the cause came from",
            source_ends.clone(),
        );
        let listener_ends = Family::<EndLabels, Counter>::default();
        registry.register(
            "listener_ends",
            "Listeners ended, by reason and by where the cause came from (a move is not an end)",
            listener_ends.clone(),
        );
        registry.register_collector(Box::new(MountCollector { mounts, started }));
        registry.register_collector(Box::new(RelayCollector { relays }));
        registry.register_collector(Box::new(EdgeCollector { edges }));
        Metrics {
            registry,
            requests,
            connections,
            runtime_stalls,
            tls_handshake_failures,
            refused_pending,
            slides_stored,
            slide_bytes_stored,
            source_ends,
            listener_ends,
        }
    }

    pub(crate) fn source_ended(&self, end: &SourceEnd) {
        self.source_ends
            .get_or_create(&vec![
                ("reason", end.reason()),
                ("origin", end.origin().label()),
            ])
            .inc();
    }

    pub(crate) fn listener_ended(&self, end: ListenerEnd) {
        self.listener_ends
            .get_or_create(&vec![
                ("reason", end.reason()),
                ("origin", end.origin().label()),
            ])
            .inc();
    }

    /// The text a scrape gets.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Reads the relay board at scrape time: per relay or push (`kind`, `mount`, `peer`), whether
/// it is connected, its connections and its stream bytes.
#[derive(Debug)]
struct RelayCollector {
    relays: Arc<RelayBoard>,
}

impl Collector for RelayCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.relays.all();
        type Get = fn(&RelayStatus) -> i64;
        let series: [(&str, &str, prometheus_client::metrics::MetricType, Get); 3] = [
            (
                "relay_connected",
                "1 while the relay or push is connected to the other server",
                prometheus_client::metrics::MetricType::Gauge,
                |r| i64::from(r.is_connected()),
            ),
            (
                "relay_connections",
                "Connections the relay or push made to the other server (reconnects included)",
                prometheus_client::metrics::MetricType::Counter,
                |r| r.connections.load(Ordering::Relaxed) as i64,
            ),
            (
                "relay_bytes",
                "Stream bytes pulled (kind=pull) or pushed (kind=push)",
                prometheus_client::metrics::MetricType::Counter,
                |r| r.bytes.load(Ordering::Relaxed) as i64,
            ),
        ];
        for (name, help, kind, get) in series {
            let mut me = encoder.encode_descriptor(name, help, None, kind)?;
            for r in &all {
                let labels = [
                    ("kind", r.kind.label()),
                    ("mount", r.mount.as_str()),
                    ("peer", r.peer.as_str()),
                ];
                let v = get(r);
                match kind {
                    prometheus_client::metrics::MetricType::Counter => {
                        ConstCounter::new(v as u64).encode(me.encode_family(&labels)?)?
                    }
                    _ => ConstGauge::new(v).encode(me.encode_family(&labels)?)?,
                }
            }
        }
        Ok(())
    }
}

/// Reads the edge board at scrape time: per edge (`edge`, its URL) whether it gets
/// listeners, its listeners at the last probe, and the listeners sent there.
#[derive(Debug)]
struct EdgeCollector {
    edges: Arc<EdgeBoard>,
}

impl Collector for EdgeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType;
        let all = self.edges.views();
        let me = encoder.encode_descriptor(
            "redirects",
            "Listeners sent to an edge by redirect",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.edges.redirects()).encode(me)?;
        type Get = fn(&EdgeView) -> u64;
        let series: [(&str, &str, MetricType, Get); 3] = [
            (
                "edge_healthy",
                "1 while the edge answers probes and gets listeners",
                MetricType::Gauge,
                |e| u64::from(e.healthy),
            ),
            (
                "edge_listeners",
                "The edge's listeners at its last probe",
                MetricType::Gauge,
                |e| e.listeners.unwrap_or(0) as u64,
            ),
            (
                "edge_redirects",
                "Listeners sent to the edge since it announced itself",
                MetricType::Counter,
                |e| e.redirects,
            ),
        ];
        for (name, help, kind, get) in series {
            let mut me = encoder.encode_descriptor(name, help, None, kind)?;
            for e in &all {
                let labels = [("edge", e.url.as_str())];
                match kind {
                    MetricType::Counter => {
                        ConstCounter::new(get(e)).encode(me.encode_family(&labels)?)?
                    }
                    _ => ConstGauge::new(get(e) as i64).encode(me.encode_family(&labels)?)?,
                }
            }
        }
        Ok(())
    }
}

/// Reads every mount at scrape time.
#[derive(Debug)]
struct MountCollector {
    mounts: Arc<mount::Registry>,
    started: SystemTime,
}

impl Collector for MountCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mounts = self.mounts.all();
        let now = SystemTime::now();

        let g = ConstGauge::new(self.mounts.total_listeners.load(Ordering::Relaxed) as i64);
        g.encode(encoder.encode_descriptor(
            "listeners",
            "Listeners connected, all mounts",
            None,
            g.metric_type(),
        )?)?;
        let sources = mounts.iter().filter(|m| m.has_source()).count();
        let g = ConstGauge::new(sources as i64);
        g.encode(encoder.encode_descriptor(
            "sources",
            "Sources connected",
            None,
            g.metric_type(),
        )?)?;
        let g = ConstGauge::new(mounts.len() as i64);
        g.encode(encoder.encode_descriptor(
            "mounts",
            "Mounts open (a mount waiting for its source counts)",
            None,
            g.metric_type(),
        )?)?;
        let up = now
            .duration_since(self.started)
            .unwrap_or_default()
            .as_secs_f64();
        let g = ConstGauge::new(up);
        g.encode(encoder.encode_descriptor(
            "uptime_seconds",
            "Seconds since the server started",
            None,
            g.metric_type(),
        )?)?;

        type Get = fn(&mount::Mount, SystemTime) -> f64;
        let gauges: [(&str, &str, Get); 7] = [
            (
                "mount_relays",
                "Other servers relaying the mount (logged in as the relay user; not listeners)",
                |m, _| m.relays.load(Ordering::Relaxed) as f64,
            ),
            ("mount_listeners", "Listeners of the mount", |m, _| {
                m.listeners.load(Ordering::Relaxed) as f64
            }),
            (
                "mount_listener_peak",
                "Most listeners the mount had at once",
                |m, _| m.listener_peak.load(Ordering::Relaxed) as f64,
            ),
            (
                "mount_source_connected",
                "1 while a source feeds the mount, 0 while it waits for one",
                |m, _| f64::from(u8::from(m.has_source())),
            ),
            (
                "mount_source_uptime_seconds",
                "Seconds since the current source connected (0 without one)",
                |m, now| {
                    if !m.has_source() {
                        return 0.0;
                    }
                    let since = m.state().connected_at;
                    now.duration_since(since).unwrap_or_default().as_secs_f64()
                },
            ),
            (
                "mount_ingest_bitrate_bits_per_second",
                "Bitrate the source sends, measured over the last seconds",
                |m, _| m.ingest_bps.load(Ordering::Relaxed) as f64,
            ),
            (
                "mount_stream_uptime_seconds",
                "Seconds since the mount's stream started (kept across source reconnects)",
                |m, now| {
                    let since = m.state().started;
                    now.duration_since(since).unwrap_or_default().as_secs_f64()
                },
            ),
        ];
        for (name, help, get) in gauges {
            let mut me = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for m in &mounts {
                let labels = [("mount", m.path.as_str())];
                ConstGauge::new(get(m, now)).encode(me.encode_family(&labels)?)?;
            }
        }

        type Count = fn(&mount::Mount) -> u64;
        let counters: [(&str, &str, Count); 4] = [
            (
                "mount_received_bytes",
                "Stream bytes received from sources",
                |m| m.bytes_read.load(Ordering::Relaxed),
            ),
            ("mount_sent_bytes", "Bytes sent to listeners", |m| {
                m.bytes_sent.get()
            }),
            (
                "mount_sent_from_file_bytes",
                "Bytes sent to listeners with sendfile, from the mount's in-memory file (included in mount_sent_bytes)",
                |m| m.bytes_sent_from_file.get(),
            ),
            (
                "mount_listeners_lagged",
                "Listeners cut off (or skipped ahead) for falling more than queue-size behind",
                |m| m.slow_listeners.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, get) in counters {
            let mut me = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for m in &mounts {
                let labels = [("mount", m.path.as_str())];
                ConstCounter::new(get(m)).encode(me.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
