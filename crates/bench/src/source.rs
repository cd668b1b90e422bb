//! The bench source: pushes an Ogg file to a mount with PUT at real-time pace, and stamps each
//! page with the instant it was written, so listeners in the same process can measure
//! forwarding latency (source write to listener read).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agora_format::ogg::{PageLen, page_len};
use anyhow::{Context, Result, bail};
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Pages written recently, by CRC field. Bounded: the oldest stamps are forgotten.
#[derive(Debug, Default)]
pub(crate) struct Stamps {
    inner: Mutex<(HashMap<u32, Instant>, VecDeque<u32>)>,
}

const KEEP: usize = 4096;

impl Stamps {
    fn stamp(&self, crc: u32) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *g;
        map.insert(crc, Instant::now());
        order.push_back(crc);
        if order.len() > KEEP
            && let Some(old) = order.pop_front()
        {
            map.remove(&old);
        }
    }

    pub(crate) fn sent_at(&self, crc: u32) -> Option<Instant> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.get(&crc).copied()
    }
}

/// Splits a whole Ogg file into pages.
pub(crate) fn ogg_pages(data: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut b = data;
    while !b.is_empty() {
        let len = match page_len(b) {
            PageLen::Page(len) => len,
            PageLen::Incomplete { len: Some(_) } => {
                bail!("truncated Ogg page at byte {}", data.len() - b.len())
            }
            PageLen::Incomplete { len: None } | PageLen::NotAPage => bail!(
                "not an Ogg file (or truncated) at byte {}",
                data.len() - b.len()
            ),
        };
        out.push(&b[..len]);
        b = &b[len..];
    }
    Ok(out)
}

/// Pushes `pages` to `path` on `addr` as user `source`, paced at `kbps`, looping the file, until
/// the connection fails or the task is dropped.
pub(crate) async fn push(
    addr: SocketAddr,
    path: &str,
    password: &str,
    pages: Vec<Vec<u8>>,
    kbps: f64,
    stamps: &Stamps,
) -> Result<()> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("bench source: connecting to {addr}"))?;
    s.set_nodelay(true)?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("source:{password}"));
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/ogg\r\nExpect: 100-continue\r\nice-name: agora-bench\r\n\r\n"
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
    let bytes_per_sec = kbps * 1000.0 / 8.0;
    let t0 = Instant::now();
    let mut sent = 0u64;
    loop {
        for page in &pages {
            let due = t0 + Duration::from_secs_f64(sent as f64 / bytes_per_sec);
            tokio::time::sleep_until(due.into()).await;
            stamps.stamp(u32::from_le_bytes([page[22], page[23], page[24], page[25]]));
            s.write_all(page).await.context("bench source: writing")?;
            sent += page.len() as u64;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A page with one packet (under 255 bytes) and `crc` in its checksum field.
    pub(crate) fn page(crc: u32, body: &[u8]) -> Vec<u8> {
        let mut p = b"OggS\0\0".to_vec();
        p.extend_from_slice(&[0; 16]);
        p.extend_from_slice(&crc.to_le_bytes());
        p.push(1);
        p.push(u8::try_from(body.len()).expect("a short packet"));
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn ogg_pages_splits_a_file_and_says_where_it_is_not_ogg() {
        let (a, b) = (page(1, b"first"), page(2, b"second page"));
        let file = [&a[..], &b[..]].concat();
        let pages = ogg_pages(&file).expect("two pages");
        assert_eq!(pages, vec![&a[..], &b[..]]);
        assert!(ogg_pages(b"").expect("empty").is_empty());

        let err = |data: &[u8]| ogg_pages(data).expect_err("not whole pages").to_string();
        let at = a.len();
        assert_eq!(
            err(&file[..file.len() - 1]),
            format!("truncated Ogg page at byte {at}")
        );
        for cut in [at + 3, at + 27] {
            assert_eq!(
                err(&file[..cut]),
                format!("not an Ogg file (or truncated) at byte {at}")
            );
        }
        assert_eq!(
            err(&[&a[..], b"ID3 and more bytes than a page header"].concat()),
            format!("not an Ogg file (or truncated) at byte {at}")
        );
    }
}
