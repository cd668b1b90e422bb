//! A stream file cut into the writes a live source client makes, each with its moment on the
//! stream's own timeline, so the bench source can replay it as ffmpeg or liquidsoap would:
//!
//! | format | one write | its moment |
//! |---|---|---|
//! | MP3, AAC-ADTS | one frame (an ID3v2 tag rides with the frame after it) | the frame's end: samples so far / sample rate |
//! | Ogg | one page | the page's granule position, read per codec (Opus, Vorbis, Theora) |
//! | WebM | the headers, then one whole Cluster | the Cluster's last block: Cluster timecode + block timecode |
//!
//! WebM goes a Cluster at a time because that is what ffmpeg's Matroska muxer writes: it builds
//! each Cluster in memory and writes it when it closes (to a pipe or a network output, every
//! second or 32 KiB, earlier at a keyframe past 4 KiB). Ogg pages whose time cannot be read
//! (a codec other than those three) take the time of the page before; a file with no readable
//! time at all is paced by its size and `--kbps`.
//!
//! Each write that begins a unit also carries its [`keys`](crate::keys) key, so that listeners
//! can tell when it reaches them.

use agora_format::mpeg::{self, MpegFramer};
use agora_format::ogg::{PageLen, page_len};
use agora_format::{Event, Framer};
use anyhow::{Context, Result, bail};

use crate::keys::{self, CLUSTER};
use crate::stream_format::StreamFormat;

/// One write of the source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Write {
    pub bytes: Vec<u8>,
    /// Seconds from the stream's start.
    pub at: f64,
    /// The key of the unit this write begins, for latency stamps.
    pub key: Option<u64>,
}

/// A file ready to be replayed.
#[derive(Debug)]
pub(crate) struct Stream {
    pub format: StreamFormat,
    pub writes: Vec<Write>,
    /// Seconds from one pass's start to the next when the file is looped: the stream's end.
    pub period: f64,
}

impl Stream {
    /// Cuts `data` into writes; `kbps` paces an Ogg file whose time cannot be read.
    pub(crate) fn new(data: &[u8], format: StreamFormat, kbps: Option<f64>) -> Result<Stream> {
        let (mut writes, mut end) = match format {
            StreamFormat::Mp3 => frames(data, mpeg::Kind::Mp3)?,
            StreamFormat::Aac => frames(data, mpeg::Kind::Adts)?,
            StreamFormat::Ogg => timed_pages(data)?,
            StreamFormat::Webm => webm_clusters(data)?,
        };
        if writes.is_empty() {
            bail!("an empty file");
        }
        if end <= 0.0 {
            let kbps = kbps
                .filter(|k| *k > 0.0)
                .context("no timestamps could be read from this file: give --kbps")?;
            let mut sent = 0usize;
            for w in &mut writes {
                sent += w.bytes.len();
                w.at = sent as f64 * 8.0 / (kbps * 1000.0);
            }
            end = writes.last().map_or(0.0, |w| w.at);
        }
        Ok(Stream {
            format,
            writes,
            period: end,
        })
    }

    /// Average bitrate over the timeline, kbit/s.
    pub(crate) fn kbps(&self) -> f64 {
        let bytes: usize = self.writes.iter().map(|w| w.bytes.len()).sum();
        bytes as f64 * 8.0 / self.period.max(1e-3) / 1000.0
    }
}

/// MP3 or ADTS frames through agora-format's framer (it skips garbage and passes ID3 tags),
/// and the stream's end.
fn frames(data: &[u8], kind: mpeg::Kind) -> Result<(Vec<Write>, f64)> {
    let mut framer = MpegFramer::new(kind);
    framer.push(data);
    let mut writes = Vec::new();
    let mut tag = Vec::new();
    let mut samples = 0.0;
    loop {
        match framer.poll() {
            Ok(Some(Event::Chunk(c))) if c.sync => {
                let h = mpeg::frame_header(kind, &c.bytes).context("a frame without a header")?;
                samples += f64::from(h.samples) / f64::from(h.sample_rate);
                let mut bytes = std::mem::take(&mut tag);
                bytes.extend_from_slice(&c.bytes);
                writes.push(Write {
                    bytes,
                    at: samples,
                    key: Some(keys::hash_key(&c.bytes)),
                });
            }
            // An ID3v2 tag: written with the next frame.
            Ok(Some(Event::Chunk(c))) => tag.extend_from_slice(&c.bytes),
            Ok(Some(Event::Headers(_))) => {}
            Ok(None) => break,
            Err(e) if e.is_fatal() => bail!("{e}"),
            Err(_) => {}
        }
    }
    if writes.is_empty() {
        bail!("no {kind:?} frame in the file");
    }
    Ok((writes, samples))
}

/// How an Ogg logical stream's granule position maps to seconds.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// Audio: granule = samples at this rate.
    Samples(f64),
    /// Theora: granule = keyframe number << shift | frames since; frame duration in seconds.
    Theora { shift: u32, frame_secs: f64 },
}

impl Clock {
    /// From a logical stream's first packet (its BOS page).
    fn from_bos(packet: &[u8]) -> Option<Clock> {
        if packet.starts_with(b"OpusHead") {
            return Some(Clock::Samples(48_000.0));
        }
        if packet.starts_with(b"\x01vorbis") {
            let rate = u32::from_le_bytes(packet.get(12..16)?.try_into().ok()?);
            return (rate > 0).then_some(Clock::Samples(f64::from(rate)));
        }
        if packet.starts_with(b"\x80theora") {
            let num = u32::from_be_bytes(packet.get(22..26)?.try_into().ok()?);
            let den = u32::from_be_bytes(packet.get(26..30)?.try_into().ok()?);
            let (b40, b41) = (*packet.get(40)?, *packet.get(41)?);
            let shift = u32::from(((b40 & 3) << 3) | (b41 >> 5));
            return (num > 0).then_some(Clock::Theora {
                shift,
                frame_secs: f64::from(den) / f64::from(num),
            });
        }
        None
    }

    fn secs(self, granule: u64) -> f64 {
        match self {
            Clock::Samples(rate) => granule as f64 / rate,
            Clock::Theora { shift, frame_secs } => {
                let frames = (granule >> shift) + (granule & ((1u64 << shift) - 1));
                frames as f64 * frame_secs
            }
        }
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

/// Ogg pages, timed by their granule positions (the end of their last packet), and the
/// stream's end.
fn timed_pages(data: &[u8]) -> Result<(Vec<Write>, f64)> {
    let mut clocks = std::collections::HashMap::new();
    let mut at = 0.0f64;
    let mut writes = Vec::new();
    for page in ogg_pages(data)? {
        let serial = u32::from_le_bytes([page[14], page[15], page[16], page[17]]);
        let granule = u64::from_le_bytes(page[6..14].try_into().expect("8 bytes"));
        if page[5] & 0x02 != 0 {
            let first = 27 + usize::from(page[26]);
            if let Some(clock) = page.get(first..).and_then(Clock::from_bos) {
                clocks.insert(serial, clock);
            }
        }
        // -1: no packet ends on this page.
        if granule != u64::MAX
            && let Some(clock) = clocks.get(&serial)
        {
            at = at.max(clock.secs(granule));
        }
        writes.push(Write {
            bytes: page.to_vec(),
            at,
            key: Some(keys::ogg_key(page)),
        });
    }
    Ok((writes, at))
}

// Matroska element IDs (with their length markers).
const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMECODE_SCALE: u32 = 0x2A_D7B1;
const TIMECODE: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;

/// An EBML variable-length integer: (value without the marker, length, all value bits set).
fn vint(b: &[u8]) -> Option<(u64, usize, bool)> {
    let first = *b.first()?;
    let len = first.leading_zeros() as usize + 1;
    let bytes = b.get(..len).filter(|_| len <= 8)?;
    let mask = (0xFF_u16 >> len) as u8;
    let value = bytes[1..]
        .iter()
        .fold(u64::from(first & mask), |v, &x| v << 8 | u64::from(x));
    Some((value, len, value == (1u64 << (7 * len)) - 1))
}

/// An element head: (ID, ID length, body size or `None` when unknown, head length).
fn element(b: &[u8]) -> Option<(u32, usize, Option<u64>, usize)> {
    let id_len = b.first()?.leading_zeros() as usize + 1;
    let id = b
        .get(..id_len)
        .filter(|_| id_len <= 4)?
        .iter()
        .fold(0u32, |v, &x| v << 8 | u32::from(x));
    let (size, size_len, unknown) = vint(&b[id_len..])?;
    Some((id, id_len, (!unknown).then_some(size), id_len + size_len))
}

fn uint(body: &[u8]) -> u64 {
    body.iter().fold(0u64, |v, &x| v << 8 | u64::from(x))
}

/// The relative timecode of a Block or SimpleBlock body (after the track number).
fn block_timecode(body: &[u8]) -> Option<i64> {
    let (_, len, _) = vint(body)?;
    let t = body.get(len..len + 2)?;
    Some(i64::from(i16::from_be_bytes([t[0], t[1]])))
}

/// A Cluster at the start of `b`: its length, the timecode of its last block in ticks, and its
/// number of blocks. A Cluster of unknown size ends where an element with a 4-byte ID (a
/// Segment child) begins.
fn cluster(b: &[u8], head_len: usize, size: Option<u64>) -> Result<(usize, i64, usize)> {
    let end = match size {
        Some(s) => head_len + usize::try_from(s)?,
        None => b.len(),
    };
    let body = b.get(head_len..end).context("truncated WebM Cluster")?;
    let (mut base, mut last, mut at, mut blocks) = (0i64, 0i64, 0usize, 0usize);
    while at < body.len() {
        let (id, id_len, size, len) = element(&body[at..]).context("bad element in a Cluster")?;
        if size.is_none() || id_len == 4 {
            return Ok((head_len + at, base + last, blocks));
        }
        let child = body
            .get(at + len..at + len + usize::try_from(size.unwrap_or(0))?)
            .context("truncated element in a Cluster")?;
        match id {
            TIMECODE => base = i64::try_from(uint(child))?,
            SIMPLE_BLOCK => {
                last = last.max(block_timecode(child).unwrap_or(0));
                blocks += 1;
            }
            BLOCK_GROUP => {
                let mut g = child;
                while let Some((id, _, Some(s), len)) = element(g) {
                    let s = usize::try_from(s)?;
                    if id == BLOCK {
                        let t = g.get(len..len + s).and_then(block_timecode).unwrap_or(0);
                        last = last.max(t);
                        blocks += 1;
                    }
                    g = g.get(len + s..).unwrap_or_default();
                }
            }
            _ => {}
        }
        at += len + child.len();
    }
    Ok((end, base + last, blocks))
}

/// WebM: everything before the first Cluster as one write, then a write per Cluster; and the
/// stream's end (its last block's time plus the mean time between blocks).
fn webm_clusters(data: &[u8]) -> Result<(Vec<Write>, f64)> {
    let mut writes = Vec::new();
    let mut scale_ns = 1_000_000u64;
    let (mut p, mut pending_from, mut at, mut blocks) = (0usize, 0usize, 0.0f64, 0usize);
    while p < data.len() {
        let (id, _, size, head_len) =
            element(&data[p..]).with_context(|| format!("bad EBML element at byte {p}"))?;
        match id {
            // Into the Segment: its children follow.
            SEGMENT => p += head_len,
            CLUSTER => {
                if pending_from < p {
                    writes.push(Write {
                        bytes: data[pending_from..p].to_vec(),
                        at,
                        key: None,
                    });
                }
                let (len, ticks, n) = cluster(&data[p..], head_len, size)?;
                blocks += n;
                at = at.max(ticks as f64 * scale_ns as f64 / 1e9);
                let bytes = data[p..p + len].to_vec();
                writes.push(Write {
                    key: Some(keys::hash_key(&bytes)),
                    bytes,
                    at,
                });
                p += len;
                pending_from = p;
            }
            _ => {
                let len = head_len
                    + usize::try_from(size.with_context(|| {
                        format!("unknown size on element {id:#x} at byte {p}")
                    })?)?;
                let body = data
                    .get(p + head_len..p + len)
                    .with_context(|| format!("truncated element {id:#x} at byte {p}"))?;
                if id == INFO {
                    let mut b = body;
                    while let Some((id, _, Some(s), l)) = element(b) {
                        let s = usize::try_from(s)?;
                        if id == TIMECODE_SCALE {
                            scale_ns = b.get(l..l + s).map_or(scale_ns, uint);
                        }
                        b = b.get(l + s..).unwrap_or_default();
                    }
                }
                if id == EBML && p > 0 {
                    bail!("a second EBML header at byte {p}: one WebM stream per file");
                }
                p += len;
            }
        }
    }
    if !writes.iter().any(|w| w.key.is_some()) {
        bail!("no Cluster in the WebM file");
    }
    Ok((writes, at + at / blocks.max(1) as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::{mp3_frame, page};

    #[test]
    fn mp3_frames_are_timed_by_their_samples() {
        let file = [
            b"ID3\x04\0\0\0\0\0\x02hi".to_vec(),
            mp3_frame(1),
            mp3_frame(2),
        ]
        .concat();
        assert_eq!(StreamFormat::detect(&file).expect("mp3"), StreamFormat::Mp3);
        let s = Stream::new(&file, StreamFormat::Mp3, None).expect("frames");
        assert_eq!(s.writes.len(), 2);
        assert_eq!(
            s.writes[0].bytes.len(),
            12 + 417,
            "the tag rides with frame 1"
        );
        let frame = 1152.0 / 44100.0;
        assert!((s.writes[1].at - 2.0 * frame).abs() < 1e-9);
        assert_eq!(s.writes[1].key, Some(keys::hash_key(&mp3_frame(2))));
        assert!((s.period - 2.0 * frame).abs() < 1e-9);
        assert!((s.kbps() - (12.0 + 2.0 * 417.0) * 8.0 / (2.0 * frame) / 1000.0).abs() < 1e-6);
    }

    fn el(id: &[u8], body: &[u8]) -> Vec<u8> {
        let size = u8::try_from(body.len()).expect("short");
        assert!(size < 0x7F);
        [id, &[0x80 | size], body].concat()
    }

    #[test]
    fn webm_is_cut_into_headers_and_timed_clusters() {
        let block = |t: i16| {
            el(
                &[0xA3],
                &[&[0x81][..], &t.to_be_bytes(), &[0x80, 1, 2]].concat(),
            )
        };
        let cluster = |tc: u8, last: i16| {
            el(
                &[0x1F, 0x43, 0xB6, 0x75],
                &[el(&[0xE7], &[tc]), block(0), block(last)].concat(),
            )
        };
        let head = [
            el(&[0x1A, 0x45, 0xDF, 0xA3], b"\x42\x86\x81\x01"),
            vec![
                0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            ],
            el(
                &[0x15, 0x49, 0xA9, 0x66],
                &el(&[0x2A, 0xD7, 0xB1], &[0x0F, 0x42, 0x40]),
            ),
        ]
        .concat();
        let (c1, c2) = (cluster(0, 40), cluster(100, 20));
        let file = [&head[..], &c1, &c2].concat();
        let s =
            Stream::new(&file, StreamFormat::detect(&file).expect("webm"), None).expect("clusters");
        let got: Vec<(usize, f64, bool)> = s
            .writes
            .iter()
            .map(|w| (w.bytes.len(), w.at, w.key.is_some()))
            .collect();
        assert_eq!(
            got,
            vec![
                (head.len(), 0.0, false),
                (c1.len(), 0.04, true),
                (c2.len(), 0.12, true)
            ]
        );
    }

    #[test]
    fn ogg_pages_are_timed_by_granule_and_codec() {
        let page = |flags: u8, granule: u64, body: &[u8]| {
            let mut p = page(0, body);
            p[5] = flags;
            p[6..14].copy_from_slice(&granule.to_le_bytes());
            p
        };
        let file = [
            page(2, 0, b"OpusHead\x01\x02"),
            page(0, 48_000, b"a"),
            page(0, u64::MAX, b"b"),
            page(0, 72_000, b"c"),
        ]
        .concat();
        let s = Stream::new(&file, StreamFormat::Ogg, None).expect("pages");
        let at: Vec<f64> = s.writes.iter().map(|w| w.at).collect();
        assert_eq!(at, vec![0.0, 1.0, 1.0, 1.5]);
        // Theora: keyframe 2 (shift 6) plus 3 frames at 25 fps.
        let theora = Clock::Theora {
            shift: 6,
            frame_secs: 0.04,
        };
        assert!((theora.secs(2 << 6 | 3) - 0.2).abs() < 1e-9);
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

    #[test]
    fn ogg_without_a_known_codec_is_paced_by_kbps() {
        let file = [page(1, &[0; 100]), page(2, &[0; 100])].concat();
        assert!(Stream::new(&file, StreamFormat::Ogg, None).is_err());
        let s = Stream::new(&file, StreamFormat::Ogg, Some(1.0)).expect("paced");
        assert!((s.writes[1].at - 2.0 * 128.0 * 8.0 / 1000.0).abs() < 1e-9);
    }
}
