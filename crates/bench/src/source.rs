//! The bench source: pushes a stream file to a mount with PUT, write by write at the moments
//! of the stream's own timeline (see [`workload`](crate::workload)), and stamps each unit with
//! the instant it was written, so listeners in the same process can measure forwarding latency
//! (source write to listener read) and the time a joining listener takes to reach the live edge.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stream_format::StreamFormat;
use crate::workload::Stream;

/// Units written recently, by [`keys`](crate::keys) key. Bounded: the oldest stamps are
/// forgotten.
#[derive(Debug)]
pub(crate) struct Stamps {
    format: StreamFormat,
    /// When the source's timeline started.
    started: OnceLock<Instant>,
    inner: Mutex<(HashMap<u64, Instant>, VecDeque<u64>)>,
    /// Stream bytes written so far (what "real time" is measured against: a variable-bitrate
    /// stream sends more in some windows than others).
    written: std::sync::atomic::AtomicU64,
}

/// Stamps kept: minutes of frames at ~40 a second.
const KEEP: usize = 8192;

impl Stamps {
    pub(crate) fn new(format: StreamFormat) -> Stamps {
        Stamps {
            format,
            started: OnceLock::new(),
            inner: Mutex::default(),
            written: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Stream bytes the source has written so far.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The format of the stamped stream, for the listeners' finders.
    pub(crate) fn format(&self) -> StreamFormat {
        self.format
    }

    /// When the source's timeline started, once it has.
    pub(crate) fn started(&self) -> Option<Instant> {
        self.started.get().copied()
    }

    fn stamp(&self, key: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *g;
        map.insert(key, Instant::now());
        order.push_back(key);
        if order.len() > KEEP
            && let Some(old) = order.pop_front()
        {
            map.remove(&old);
        }
    }

    pub(crate) fn sent_at(&self, key: u64) -> Option<Instant> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.get(&key).copied()
    }
}

/// Pushes `stream` to `path` on `addr` as user `source`, each write at its moment, looping the
/// file, until the connection fails or the task is dropped.
pub(crate) async fn push(
    addr: SocketAddr,
    path: &str,
    password: &str,
    stream: &Stream,
    stamps: &Stamps,
) -> Result<()> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("bench source: connecting to {addr}"))?;
    s.set_nodelay(true)?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("source:{password}"));
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: {}\r\nExpect: 100-continue\r\nice-name: agora-bench\r\n\r\n",
        stream.format.content_type()
    );
    s.write_all(head.as_bytes()).await?;
    let mut resp = Vec::new();
    let mut b = [0u8; 512];
    while !resp.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b).await?;
        if n == 0 {
            bail!("bench source: the server closed the connection");
        }
        resp.extend_from_slice(&b[..n]);
    }
    let status = String::from_utf8_lossy(&resp);
    if !(status.starts_with("HTTP/1.1 100") || status.contains(" 200 ")) {
        bail!(
            "bench source refused: {}",
            status.lines().next().unwrap_or("")
        );
    }
    let t0 = Instant::now();
    let _ = stamps.started.set(t0);
    for pass in 0u32.. {
        let offset = f64::from(pass) * stream.period;
        for w in &stream.writes {
            let due = t0 + Duration::from_secs_f64(offset + w.at);
            tokio::time::sleep_until(due.into()).await;
            if let Some(key) = w.key {
                stamps.stamp(key);
            }
            s.write_all(&w.bytes)
                .await
                .context("bench source: writing")?;
            stamps
                .written
                .fetch_add(w.bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(())
}
