//! The listeners of one process: connect on a ramp, read, time the first byte and the first
//! decodable keyframe, count the bytes of the measurement window.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agora_format::{Demuxer, Event, Format};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::keys::Finder;
use crate::source::Stamps;

/// What one process's listeners did: raw samples, so percentiles can be taken over all
/// processes together.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Samples {
    pub opened: usize,
    /// Milliseconds from the start of connecting to the first body byte.
    pub first_byte_ms: Vec<f64>,
    /// Milliseconds from the start of connecting to a complete first sync unit (stream headers
    /// and a keyframe: where a player can start).
    pub first_keyframe_ms: Vec<f64>,
    /// Bytes each listener received inside the window (one entry per listener).
    pub window_bytes: Vec<u64>,
    /// Forwarding latency samples, milliseconds (source write to listener read).
    pub latency_ms: Vec<f64>,
    /// Milliseconds from the start of connecting to the first unit received less than
    /// [`LIVE_EDGE`] after the source wrote it (latency listeners, first connection only).
    #[serde(default)]
    pub live_edge_ms: Vec<f64>,
    /// Listeners that failed, by reason.
    pub errors: std::collections::BTreeMap<String, usize>,
    /// Connections made (more than `opened` with churn: leaving listeners are replaced).
    #[serde(default)]
    pub joins: usize,
}

impl Samples {
    pub(crate) fn merge(&mut self, o: Samples) {
        self.opened += o.opened;
        self.first_byte_ms.extend(o.first_byte_ms);
        self.first_keyframe_ms.extend(o.first_keyframe_ms);
        self.window_bytes.extend(o.window_bytes);
        self.latency_ms.extend(o.latency_ms);
        self.live_edge_ms.extend(o.live_edge_ms);
        self.joins += o.joins;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

/// Milliseconds since the Unix epoch: the clock shared by every process of a run.
pub(crate) fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The TLS side of an `https://` swarm: the connector (trusting the system roots and the
/// `--ca-file`) and the name the certificate is checked against.
#[derive(Clone)]
pub(crate) struct Tls {
    pub connector: tokio_rustls::TlsConnector,
    pub name: rustls_pki_types::ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tls({:?})", self.name)
    }
}

impl Tls {
    /// For `host` (the URL's, without the port), trusting the system's roots and `ca_file`,
    /// offering `suite` first (the server follows the client's order).
    pub(crate) fn new(
        host: &str,
        ca_file: Option<&std::path::Path>,
        suite: Suite,
    ) -> anyhow::Result<Tls> {
        use anyhow::Context;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = ca_file {
            for c in rustls_pki_types::CertificateDer::pem_file_iter(path)
                .with_context(|| path.display().to_string())?
            {
                roots
                    .add(c.with_context(|| path.display().to_string())?)
                    .context("a CA certificate")?;
            }
        }
        let mut provider = rustls::crypto::ring::default_provider();
        provider
            .cipher_suites
            .sort_by_key(|s| s.suite() != suite.id());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.split(']').next())
            .unwrap_or_else(|| host.rsplit_once(':').map_or(host, |(h, _)| h));
        Ok(Tls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name: rustls_pki_types::ServerName::try_from(bare.to_string())
                .with_context(|| format!("{bare}: not a server name"))?,
        })
    }
}

/// The TLS 1.3 cipher suite the swarm's listeners ask for first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Suite {
    /// AES-128-GCM: what Chromium, Firefox and Safari offer first (the default).
    Aes128,
    /// AES-256-GCM: what OpenSSL, GnuTLS (ffmpeg, curl, VLC) and rustls offer first.
    Aes256,
    /// ChaCha20-Poly1305: phones without AES instructions.
    Chacha20,
}

impl Suite {
    /// As on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Suite::Aes128 => "aes128",
            Suite::Aes256 => "aes256",
            Suite::Chacha20 => "chacha20",
        }
    }

    fn id(self) -> rustls::CipherSuite {
        match self {
            Suite::Aes128 => rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
            Suite::Aes256 => rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            Suite::Chacha20 => rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub addr: SocketAddr,
    /// `https://`: connect with TLS.
    pub tls: Option<Tls>,
    pub host: String,
    pub path: String,
    pub listeners: usize,
    /// Connections per second; 0: all at once.
    pub rate: f64,
    pub window_start_ms: u64,
    pub window_end_ms: u64,
    /// With churn, each listener leaves after a lifetime of 0.5x to 1.5x this many
    /// milliseconds and a new one takes its place (0: listeners stay).
    pub churn_ms: u64,
}

#[derive(Default)]
struct One {
    joins: usize,
    first_byte: Option<f64>,
    first_keyframe: Option<f64>,
    window_bytes: u64,
    error: Option<String>,
    latency: Vec<f64>,
    live_edge: Option<f64>,
}

/// A listener is at the live edge once a unit reaches it this soon after the source wrote it:
/// older units are the join's burst (or a backlog), newer ones are live.
pub(crate) const LIVE_EDGE: Duration = Duration::from_secs(1);

/// Runs `plan.listeners` listeners until the window ends. With `stamps`, each listener also
/// finds the source's units in what it receives and measures forwarding latency and the time
/// to the live edge.
pub(crate) async fn run(plan: Plan, stamps: Option<Arc<Stamps>>) -> Samples {
    let plan = Arc::new(plan);
    let mut tasks = Vec::with_capacity(plan.listeners);
    let t0 = Instant::now();
    for i in 0..plan.listeners {
        if plan.rate > 0.0 {
            let at = t0 + Duration::from_secs_f64(i as f64 / plan.rate);
            tokio::time::sleep_until(at.into()).await;
        }
        tasks.push(tokio::spawn(listen(plan.clone(), stamps.clone(), i)));
    }
    let mut s = Samples {
        opened: plan.listeners,
        ..Samples::default()
    };
    for t in tasks {
        let one = t.await.unwrap_or_else(|_| One {
            error: Some("task panicked".into()),
            ..One::default()
        });
        s.first_byte_ms.extend(one.first_byte);
        s.first_keyframe_ms.extend(one.first_keyframe);
        s.window_bytes.push(one.window_bytes);
        s.latency_ms.extend(one.latency);
        s.live_edge_ms.extend(one.live_edge);
        s.joins += one.joins;
        if let Some(e) = one.error {
            *s.errors.entry(e).or_default() += 1;
        }
    }
    s
}

async fn listen(plan: Arc<Plan>, stamps: Option<Arc<Stamps>>, index: usize) -> One {
    let mut one = One::default();
    let end = plan.window_end_ms;
    loop {
        let left = end.saturating_sub(epoch_ms());
        // A lifetime spread evenly over 0.5..1.5 x churn (golden-ratio sequence, no RNG).
        let life = if plan.churn_ms > 0 {
            let x = ((index + one.joins * 7919) as f64 * 0.618_033_988_75).fract();
            ((0.5 + x) * plan.churn_ms as f64) as u64
        } else {
            u64::MAX
        };
        one.joins += 1;
        let work = read(&plan, stamps.as_deref(), &mut one);
        match tokio::time::timeout(Duration::from_millis(left.min(life)), work).await {
            Ok(Err(e)) => {
                one.error = Some(e);
                break;
            }
            Ok(Ok(())) => {
                one.error = Some("closed by the server".into());
                break;
            }
            // The window ended with the listener still reading: the normal end.
            Err(_) if life >= left => break,
            // Churn: this listener leaves, a new one connects.
            Err(_) => {}
        }
    }
    if one.first_byte.is_none() && one.error.is_none() {
        one.error = Some("no byte before the window ended".into());
    }
    one
}

async fn read(plan: &Plan, stamps: Option<&Stamps>, one: &mut One) -> Result<(), String> {
    let start = Instant::now();
    let s = TcpStream::connect(plan.addr)
        .await
        .map_err(|e| format!("connect: {}", e.kind()))?;
    match &plan.tls {
        None => session(s, start, plan, stamps, one).await,
        Some(tls) => {
            let s = tls
                .connector
                .connect(tls.name.clone(), s)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            session(s, start, plan, stamps, one).await
        }
    }
}

/// One connection's request and body, plain or TLS.
async fn session(
    mut s: impl AsyncRead + AsyncWrite + Unpin,
    start: Instant,
    plan: &Plan,
    stamps: Option<&Stamps>,
    one: &mut One,
) -> Result<(), String> {
    let req = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: agora-bench\r\n\r\n",
        plan.path, plan.host
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {}", e.kind()))?;
    let mut buf = vec![0u8; 8192];
    let mut head = Vec::new();
    // The response head.
    let body_start = loop {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {}", e.kind()))?;
        if n == 0 {
            return Err("closed before the response head".into());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let status = String::from_utf8_lossy(&head[..head.len().min(12)]).to_string();
            if !status.contains(" 200") {
                return Err(format!("status {}", status.trim()));
            }
            break p + 4;
        }
        if head.len() > 16 * 1024 {
            return Err("response head too large".into());
        }
    };
    let mut demux = Some(Demuxer::new());
    let mut finder = stamps.map(|st| Finder::new(st.format()));
    let mut got_headers = false;
    let mut take = |bytes: &[u8], one: &mut One| {
        if bytes.is_empty() {
            return;
        }
        let now_ms = epoch_ms();
        if one.first_byte.is_none() {
            one.first_byte = Some(start.elapsed().as_secs_f64() * 1e3);
        }
        if now_ms >= plan.window_start_ms && now_ms < plan.window_end_ms {
            one.window_bytes += bytes.len() as u64;
        }
        if let Some(d) = demux.as_mut() {
            d.push(bytes);
            while let Ok(Some(ev)) = d.poll() {
                match ev {
                    Event::Headers(_) => got_headers = true,
                    // MP3 and AAC have no stream headers: any sync chunk will do.
                    Event::Chunk(c)
                        if c.sync
                            && (got_headers
                                || matches!(
                                    d.format(),
                                    Some(Format::Mp3 | Format::Aac | Format::Opaque)
                                )) =>
                    {
                        one.first_keyframe = Some(start.elapsed().as_secs_f64() * 1e3);
                        break;
                    }
                    Event::Chunk(_) => {}
                }
            }
            // Framing costs client CPU: only until the first keyframe.
            if one.first_keyframe.is_some() {
                demux = None;
            }
        }
        if let (Some(f), Some(st)) = (finder.as_mut(), stamps) {
            // Latency inside the window only: a join's burst is old on purpose. Under churn
            // only first connections count, for the same reason.
            let live = now_ms >= plan.window_start_ms && one.joins == 1;
            for key in f.push(bytes) {
                let Some(age) = st.sent_at(key).map(|sent| sent.elapsed()) else {
                    continue;
                };
                if one.live_edge.is_none() && one.joins == 1 && age < LIVE_EDGE {
                    one.live_edge = Some(start.elapsed().as_secs_f64() * 1e3);
                }
                if live {
                    one.latency.push(age.as_secs_f64() * 1e3);
                }
            }
        }
    };
    take(&head[body_start..], one);
    loop {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {}", e.kind()))?;
        if n == 0 {
            return Ok(());
        }
        take(&buf[..n], one);
    }
}
