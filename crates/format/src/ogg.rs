//! Ogg framing: pages, logical streams, header capture and sync points.
//!
//! **Page model.** An Ogg stream is a sequence of pages, each `OggS`, version 0, a flags byte
//! (`0x01` continued packet, `0x02` BOS, `0x04` EOS), granule position, serial number, page
//! sequence, CRC-32 and a lacing table whose values add up to the body length. A packet ends
//! at the first lacing value below 255; a page whose flag `0x01` is set begins with the tail of
//! a packet started on an earlier page. Several *logical streams* (Theora video and Vorbis
//! audio, say) are multiplexed page by page, told apart by serial number. A *chain* is a
//! group of logical streams that start together: all their BOS pages come first, then their
//! header packets, then data. A new BOS page after data starts a new chain (a source that
//! restarted its encoder, or a playlist moving to the next track).
//!
//! ```text
//!   BOS(theora) BOS(vorbis) hdr hdr hdr hdr │ data data KEY data data .. │ BOS BOS hdr ..
//!   └──────── Event::Headers (one per chain) ┘     └ sync ┘               └ next chain
//! ```
//!
//! **Page length.** [`page_len`] is the one parser of a page's length (27-byte header plus
//! segment table) in Agora, a sans-IO check with an explicit `Incomplete`: this framer, the
//! in-band title rewriter (`ogg_title.rs`) and the benchmark's source and listeners
//! measure pages with it.
//!
//! **Codecs** are identified from the first packet of each BOS page, which also says how many
//! header packets the stream has: Vorbis 3, Theora 3, Opus 2, Speex 2 plus its
//! `extra_headers` field, FLAC (Ogg mapping 1.0) until the metadata block flagged last.
//! Skeleton streams are header-only; anything unknown is taken to have one header packet.
//!
//! **Header capture.** Every page of a chain up to and including the one that completes the
//! last header packet is held and emitted as one [`Event::Headers`] when the first page after
//! them arrives: a joining listener is sent these first, whatever page it then starts on.
//! The capture is bounded by [`HEADERS_LIMIT`] (a fatal [`FormatError::HeadersTooLarge`]:
//! Vorbis comments carrying cover art are what makes headers large).
//!
//! **Sync rule.** A listener may start at a page that begins a packet (flag `0x01` clear).
//! When the chain has a Theora stream, only its pages whose first packet is a keyframe
//! (a data packet with the frame-type bit clear: first byte `& 0xC0 == 0`) are sync points;
//! every other page is not, audio pages included. Audio-only chains are dense
//! ([`Framer::dense_sync`]).
//!
//! **Errors.** Bytes that are not a page are skipped up to the next `OggS` and reported once,
//! as [`FormatError::Garbage`], before the page that ends them. A page whose CRC does not match
//! is dropped, never forwarded, and reported as [`FormatError::OggCrc`]; framing resumes at the
//! next `OggS` inside it, or after it. More than [`MAX_STREAMS`] logical streams in one chain:
//! the extra BOS pages are dropped with [`FormatError::TooManyStreams`]. Under `cfg(fuzzing)`
//! the CRC is not checked, so a fuzzer reaches the code behind it.
//!
//! **Memory bound:** the buffer holds at most one page ([`MAX_PAGE`]) plus the last push; the
//! header capture at most [`HEADERS_LIMIT`]. Data pages are zero-copy splits of the buffer.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::{Chunk, Codec, Event, FormatError, Framer, StreamInfo, crc};

/// Length of the fixed part of a page header, before the segment (lacing) table.
pub const HEADER_LEN: usize = 27;

/// Largest Ogg page: a 27-byte header, 255 lacing values, 255 × 255 body bytes.
pub const MAX_PAGE: usize = HEADER_LEN + 255 + 255 * 255;

/// Largest header capture of one chain.
pub const HEADERS_LIMIT: usize = 1024 * 1024;

/// Most logical streams in one chain. Real streams have one to three.
pub const MAX_STREAMS: usize = 32;

const CAPTURE: &[u8; 4] = b"OggS";
const FLAG_CONTINUED: u8 = 0x01;
const FLAG_BOS: u8 = 0x02;

/// What the bytes at the start of a buffer are, as an Ogg page: the one check of a page's
/// length in Agora (the framer, the title rewriter and the bench all use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageLen {
    /// More bytes are needed. `len` is the whole page's length once the fixed header and the
    /// segment table are in (only the body is missing), `None` before that.
    Incomplete {
        /// The whole page's length, once known.
        len: Option<usize>,
    },
    /// `buf[..n]` is a whole page: header, segment table and body. The CRC is not checked.
    Page(usize),
    /// Not a page header: no `OggS` capture pattern, or a version other than 0.
    NotAPage,
}

/// Measures the Ogg page at the start of `buf` from its 27-byte header and segment table.
///
/// Fewer than [`HEADER_LEN`] bytes are always [`PageLen::Incomplete`], even when they could
/// not begin a page: the capture pattern and the version are checked together with the
/// header, once it is whole. Allocates nothing; a caller that finds a page can slice it.
pub fn page_len(buf: &[u8]) -> PageLen {
    if buf.len() < HEADER_LEN {
        return PageLen::Incomplete { len: None };
    }
    if &buf[..4] != CAPTURE || buf[4] != 0 {
        return PageLen::NotAPage;
    }
    let head_len = HEADER_LEN + usize::from(buf[26]);
    let Some(lacing) = buf.get(HEADER_LEN..head_len) else {
        return PageLen::Incomplete { len: None };
    };
    let len = head_len + lacing.iter().map(|&l| usize::from(l)).sum::<usize>();
    if buf.len() < len {
        PageLen::Incomplete { len: Some(len) }
    } else {
        PageLen::Page(len)
    }
}

/// The title a chain's comment header carries, as source clients write it (ezstream, ices2,
/// liquidsoap and GStreamer put each track's tags in the Vorbis comments of a new chain):
/// `ARTIST - TITLE`, or `TITLE` alone; `None` without a title. `headers` is a chain's header
/// capture (its BOS and header pages, as [`crate::Event::Headers`] hands it); the comment
/// header of Vorbis (`\x03vorbis`), Opus (`OpusTags`) and Theora (`\x81theora`) is read,
/// whichever stream has one first. Bounded by the input; never panics on any bytes.
pub fn comment_title(headers: &[u8]) -> Option<String> {
    // Per logical stream: packets completed so far, and the second packet's bytes.
    let mut streams: Vec<(u32, usize, Vec<u8>)> = Vec::new();
    let mut buf = headers;
    while let PageLen::Page(n) = page_len(buf) {
        let page = &buf[..n];
        buf = &buf[n..];
        let head = PageHead::read(page);
        let idx = match streams.iter().position(|s| s.0 == head.serial) {
            Some(i) => i,
            None if streams.len() < MAX_STREAMS => {
                streams.push((head.serial, 0, Vec::new()));
                streams.len() - 1
            }
            None => continue,
        };
        for (bytes, _, ends) in packets(page, &head) {
            let stream = &mut streams[idx];
            if stream.1 == 1 {
                stream.2.extend_from_slice(bytes);
                if ends && let Some(title) = parse_comment_title(&stream.2) {
                    return Some(title);
                }
            }
            if ends {
                stream.1 += 1;
            }
        }
    }
    None
}

/// Little-endian fields of a comment header, bounds-checked.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let piece = self.body.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(piece)
    }

    fn word(&mut self) -> Option<usize> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

/// `ARTIST - TITLE` (or `TITLE`) out of a comment header packet.
fn parse_comment_title(packet: &[u8]) -> Option<String> {
    let body = [&b"\x03vorbis"[..], b"OpusTags", b"\x81theora"]
        .iter()
        .find_map(|magic| packet.strip_prefix(*magic))?;
    let mut r = Reader { body, at: 0 };
    let vendor = r.word()?;
    r.take(vendor)?;
    let count = r.word()?;
    let (mut artist, mut title) = (None, None);
    for _ in 0..count {
        let Some(len) = r.word() else { break };
        let Some(comment) = r.take(len) else { break };
        let text = String::from_utf8_lossy(comment);
        let Some((key, value)) = text.split_once('=') else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if key.eq_ignore_ascii_case("TITLE") && title.is_none() {
            title = Some(value.to_string());
        } else if key.eq_ignore_ascii_case("ARTIST") && artist.is_none() {
            artist = Some(value.to_string());
        }
    }
    match (artist, title) {
        (Some(a), Some(t)) => Some(format!("{a} - {t}")),
        (None, Some(t)) => Some(t),
        _ => None,
    }
}

/// The parsed fixed part of a page header.
#[derive(Debug, Clone, Copy)]
struct PageHead {
    flags: u8,
    serial: u32,
    sequence: u32,
    crc: u32,
    /// Header length: 27 + number of lacing values.
    head_len: usize,
    /// Whole page length.
    len: usize,
}

impl PageHead {
    /// The header fields of a whole page (one [`page_len`] measured).
    fn read(page: &[u8]) -> Self {
        let word =
            |at: usize| u32::from_le_bytes([page[at], page[at + 1], page[at + 2], page[at + 3]]);
        PageHead {
            flags: page[5],
            serial: word(14),
            sequence: word(18),
            crc: word(22),
            head_len: HEADER_LEN + usize::from(page[26]),
            len: page.len(),
        }
    }
}

/// The packets (or packet pieces) of a complete page: `(bytes, starts_here, ends_here)`.
fn packets<'a>(page: &'a [u8], head: &PageHead) -> Vec<(&'a [u8], bool, bool)> {
    let lacing = &page[HEADER_LEN..head.head_len];
    let mut out = Vec::new();
    let mut at = head.head_len;
    let mut start = at;
    let mut starts_here = head.flags & FLAG_CONTINUED == 0;
    for &l in lacing {
        at += usize::from(l);
        if l < 255 {
            out.push((&page[start..at], starts_here, true));
            start = at;
            starts_here = true;
        }
    }
    if start < at || lacing.last() == Some(&255) {
        out.push((&page[start..at], starts_here, false));
    }
    out
}

/// How a logical stream's header packets end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderEnd {
    /// This many header packets are still to come.
    Count(u32),
    /// FLAC: header packets until a metadata block with the "last" flag.
    FlacLast,
    /// Skeleton: every packet is a header.
    All,
}

#[derive(Debug, Clone)]
struct Logical {
    serial: u32,
    codec: Codec,
    headers: HeaderEnd,
}

impl Logical {
    fn headers_done(&self) -> bool {
        matches!(self.headers, HeaderEnd::Count(0))
    }
}

/// What the first packet of a BOS page says about its stream.
fn identify(packet: &[u8]) -> (Codec, HeaderEnd, Option<(u32, u32)>) {
    let be24 = |at: usize| {
        packet
            .get(at..at + 3)
            .map(|b| u32::from_be_bytes([0, b[0], b[1], b[2]]))
    };
    if packet.starts_with(b"\x01vorbis") {
        (Codec::Vorbis, HeaderEnd::Count(3), None)
    } else if packet.starts_with(b"\x80theora") {
        // Identification header: magic (7), version (3), frame size in macroblocks (2 + 2),
        // then the picture width and height, 24 bits each.
        let size = be24(14).zip(be24(17));
        (Codec::Theora, HeaderEnd::Count(3), size)
    } else if packet.starts_with(b"OpusHead") {
        (Codec::Opus, HeaderEnd::Count(2), None)
    } else if packet.starts_with(b"Speex   ") {
        let extra = packet
            .get(68..72)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0)
            .min(64);
        (Codec::Speex, HeaderEnd::Count(2 + extra), None)
    } else if packet.starts_with(b"\x7fFLAC") {
        // Mapping header (9 bytes), "fLaC", then the STREAMINFO block whose first byte carries
        // the "last metadata block" flag.
        let last = packet.get(13).is_none_or(|b| b & 0x80 != 0);
        let end = if last {
            HeaderEnd::Count(1)
        } else {
            HeaderEnd::FlacLast
        };
        (Codec::Flac, end, None)
    } else if packet.starts_with(b"fishead\0") {
        (Codec::Unknown, HeaderEnd::All, None)
    } else {
        (Codec::Unknown, HeaderEnd::Count(1), None)
    }
}

/// Frames an Ogg stream; see the module documentation.
#[derive(Debug, Default)]
pub struct OggFramer {
    buf: BytesMut,
    /// Logical streams of the current chain, in BOS order.
    streams: Vec<Logical>,
    /// Header pages of the chain being captured; `None` once its headers went out.
    capture: Option<BytesMut>,
    /// Garbage skipped and not yet reported.
    skipped: usize,
    /// Events ready to hand out (a `Headers` followed by the page that ended the capture).
    ready: VecDeque<Result<Event, FormatError>>,
    info: StreamInfo,
    video_size: Option<(u32, u32)>,
    fatal: Option<FormatError>,
}

impl OggFramer {
    /// A framer at the start of an Ogg stream.
    pub fn new() -> Self {
        Self::default()
    }

    fn has_theora(&self) -> bool {
        self.streams.iter().any(|s| s.codec == Codec::Theora)
    }

    /// Skips to the next possible page start, counting the skipped bytes.
    fn resync(&mut self, from: usize) {
        let found = self.buf[from..]
            .windows(4)
            .position(|w| w == CAPTURE)
            .map(|p| p + from);
        // Without a capture pattern, keep the last three bytes: they may begin one.
        let n = found.unwrap_or_else(|| from.max(self.buf.len().saturating_sub(3)));
        self.skipped += n;
        self.buf.advance(n);
    }

    /// Takes the next complete, valid page from the buffer.
    fn next_page(&mut self) -> Result<Option<(Bytes, PageHead)>, FormatError> {
        loop {
            let head = match page_len(&self.buf) {
                PageLen::Page(len) => PageHead::read(&self.buf[..len]),
                PageLen::Incomplete { .. } => return Ok(None),
                PageLen::NotAPage => {
                    self.resync(1);
                    continue;
                }
            };
            if !cfg!(fuzzing) && crc::ogg_page_crc(&self.buf[..head.len]) != head.crc {
                // Resume at a capture pattern inside the bad page (its length may be what is
                // corrupt), or after it.
                let next = self.buf[4..head.len]
                    .windows(4)
                    .position(|w| w == CAPTURE)
                    .map_or(head.len, |p| p + 4);
                self.buf.advance(next);
                return Err(FormatError::OggCrc {
                    serial: head.serial,
                    sequence: head.sequence,
                    len: head.len,
                });
            }
            return Ok(Some((self.buf.split_to(head.len).freeze(), head)));
        }
    }

    fn start_chain(&mut self) {
        self.streams.clear();
        self.video_size = None;
        self.capture = Some(BytesMut::new());
    }

    fn add_to_capture(&mut self, page: &[u8]) -> Result<(), FormatError> {
        let capture = self.capture.get_or_insert_with(BytesMut::new);
        if capture.len() + page.len() > HEADERS_LIMIT {
            return Err(FormatError::HeadersTooLarge {
                limit: HEADERS_LIMIT,
            });
        }
        capture.extend_from_slice(page);
        Ok(())
    }

    /// Ends the header capture, if one is under way: queues the `Headers` event.
    fn end_capture(&mut self) {
        if let Some(capture) = self.capture.take() {
            if capture.is_empty() {
                return;
            }
            self.info = StreamInfo {
                codecs: self.streams.iter().map(|s| s.codec).collect(),
                video_size: self.video_size,
            };
            self.ready.push_back(Ok(Event::Headers(capture.freeze())));
        }
    }

    /// Handles one valid page: queues what it produces.
    fn page(&mut self, page: Bytes, head: PageHead) -> Result<(), FormatError> {
        let pkts = packets(&page, &head);
        if head.flags & FLAG_BOS != 0 {
            let known = self.streams.iter().any(|s| s.serial == head.serial);
            // A BOS page after the headers went out, or one repeating a serial of the chain
            // being captured, starts a new chain.
            if self.capture.is_none() || known {
                self.start_chain();
            }
            if self.streams.len() == MAX_STREAMS {
                return Err(FormatError::TooManyStreams { max: MAX_STREAMS });
            }
            let first = pkts.first().map_or(&[][..], |p| p.0);
            let (codec, mut headers, size) = identify(first);
            if codec == Codec::Theora {
                self.video_size = self.video_size.or(size);
            }
            // The BOS page holds exactly the first header packet.
            if let HeaderEnd::Count(n) = &mut headers {
                *n = n.saturating_sub(1);
            }
            self.streams.push(Logical {
                serial: head.serial,
                codec,
                headers,
            });
            return self.add_to_capture(&page);
        }

        let capturing = self.capture.is_some();
        let stream = self.streams.iter_mut().find(|s| s.serial == head.serial);
        if capturing && let Some(s) = stream.filter(|s| !s.headers_done()) {
            for (bytes, _, ends) in &pkts {
                if !ends {
                    continue;
                }
                s.headers = match s.headers {
                    HeaderEnd::Count(n) => HeaderEnd::Count(n.saturating_sub(1)),
                    HeaderEnd::FlacLast if bytes.first().is_none_or(|b| b & 0x80 != 0) => {
                        HeaderEnd::Count(0)
                    }
                    other => other,
                };
            }
            return self.add_to_capture(&page);
        }

        // A data page: the headers (if any are being captured) are complete.
        self.end_capture();
        let starts_packet = head.flags & FLAG_CONTINUED == 0;
        let sync = if self.has_theora() {
            let theora = self
                .streams
                .iter()
                .any(|s| s.serial == head.serial && s.codec == Codec::Theora);
            theora
                && starts_packet
                && pkts
                    .first()
                    .and_then(|p| p.0.first())
                    .is_some_and(|b| b & 0xC0 == 0)
        } else {
            starts_packet
        };
        self.ready
            .push_back(Ok(Event::Chunk(Chunk { bytes: page, sync })));
        Ok(())
    }
}

impl Framer for OggFramer {
    fn push(&mut self, data: &[u8]) {
        if self.fatal.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    fn poll(&mut self) -> Result<Option<Event>, FormatError> {
        if let Some(e) = &self.fatal {
            return Err(e.clone());
        }
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return ev.map(Some);
            }
            let next = self.next_page();
            // Garbage is reported once, before whatever ended it.
            if self.skipped > 0 && !matches!(next, Ok(None)) {
                let skipped = std::mem::take(&mut self.skipped);
                self.ready.push_back(Err(FormatError::Garbage {
                    skipped,
                    what: "Ogg page",
                }));
            }
            match next {
                Ok(None) => {
                    return match self.ready.pop_front() {
                        Some(ev) => ev.map(Some),
                        None => Ok(None),
                    };
                }
                Err(e) => self.ready.push_back(Err(e)),
                Ok(Some((page, head))) => {
                    if let Err(e) = self.page(page, head) {
                        if e.is_fatal() {
                            self.buf.clear();
                            self.ready.clear();
                            self.fatal = Some(e.clone());
                            return Err(e);
                        }
                        self.ready.push_back(Err(e));
                    }
                }
            }
        }
    }

    fn dense_sync(&self) -> bool {
        !self.has_theora()
    }

    fn info(&self) -> StreamInfo {
        self.info.clone()
    }

    /// A stream that ended during its headers still hands them out.
    fn flush(&mut self) -> Option<Event> {
        if self.fatal.is_some() {
            return None;
        }
        self.end_capture();
        self.ready.pop_front().and_then(Result::ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a valid page from packets (each fits on the page, the last may be open).
    fn page(flags: u8, serial: u32, seq: u32, pkts: &[&[u8]], open_last: bool) -> Vec<u8> {
        let mut lacing = Vec::new();
        let mut body = Vec::new();
        for (i, p) in pkts.iter().enumerate() {
            let mut n = p.len();
            while n >= 255 {
                lacing.push(255);
                n -= 255;
            }
            if !(open_last && i == pkts.len() - 1) {
                lacing.push(n as u8);
            } else {
                assert_eq!(n, 0, "an open packet must be a multiple of 255");
            }
            body.extend_from_slice(p);
        }
        let mut out = b"OggS\0".to_vec();
        out.push(flags);
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&serial.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.push(lacing.len() as u8);
        out.extend_from_slice(&lacing);
        out.extend_from_slice(&body);
        let crc = crc::ogg_page_crc(&out);
        out[22..26].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// A comment header: magic, vendor, then the comments.
    fn comment_packet(magic: &[u8], tags: &[&str]) -> Vec<u8> {
        let mut p = magic.to_vec();
        let vendor = b"Lavf";
        p.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        p.extend_from_slice(vendor);
        p.extend_from_slice(&(tags.len() as u32).to_le_bytes());
        for t in tags {
            p.extend_from_slice(&(t.len() as u32).to_le_bytes());
            p.extend_from_slice(t.as_bytes());
        }
        p
    }

    #[test]
    fn titles_come_from_comment_headers_even_split_across_pages() {
        let filler = format!("COMMENT={}", "x".repeat(300));
        let mut c = comment_packet(
            b"\x03vorbis",
            &["title=Opening keynote", &filler, "ARTIST=Jane Doe"],
        );
        // The packet spans two pages: 255 bytes on one (open), the rest continued.
        c.resize(c.len().max(256), 0);
        let mut all = page(FLAG_BOS, 7, 0, &[b"\x01vorbis-identification"], false);
        all.extend(page(0, 7, 1, &[&c[..255]], true));
        all.extend(page(
            FLAG_CONTINUED,
            7,
            2,
            &[&c[255..], b"\x05vorbis-setup"],
            false,
        ));
        assert_eq!(
            comment_title(&all).as_deref(),
            Some("Jane Doe - Opening keynote")
        );
        // Any prefix: no panic, and a title only once the whole comment packet is in.
        for cut in 0..all.len() {
            let t = comment_title(&all[..cut]);
            assert!(t.is_none() || t.as_deref() == Some("Jane Doe - Opening keynote"));
        }
        // Opus, a title alone.
        let o = comment_packet(b"OpusTags", &["TITLE=Only a title"]);
        let mut opus = page(FLAG_BOS, 9, 0, &[b"OpusHead-identification"], false);
        opus.extend(page(0, 9, 1, &[&o], false));
        assert_eq!(comment_title(&opus).as_deref(), Some("Only a title"));
        // No title, an artist alone, and lengths that lie.
        let none = comment_packet(b"OpusTags", &["ARTIST=Someone", "ENCODER=x"]);
        let mut p = page(FLAG_BOS, 9, 0, &[b"OpusHead"], false);
        p.extend(page(0, 9, 1, &[&none], false));
        assert_eq!(comment_title(&p), None);
        let mut lying = b"OpusTags".to_vec();
        lying.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut p = page(FLAG_BOS, 9, 0, &[b"OpusHead"], false);
        p.extend(page(0, 9, 1, &[&lying], false));
        assert_eq!(comment_title(&p), None);
    }

    #[test]
    fn page_len_in_every_split_of_a_page() {
        let big = vec![7u8; 600];
        for p in [
            page(FLAG_BOS, 1, 0, &[b"\x01vorbis-id"], false),
            page(0, 1, 2, &[&big, b"short"], false),
            page(0, 1, 3, &[], false),
        ] {
            let nsegs = usize::from(p[26]);
            for cut in 0..p.len() {
                let want = if cut < HEADER_LEN + nsegs {
                    PageLen::Incomplete { len: None }
                } else {
                    PageLen::Incomplete { len: Some(p.len()) }
                };
                assert_eq!(page_len(&p[..cut]), want, "{cut} of {} bytes", p.len());
            }
            assert_eq!(page_len(&p), PageLen::Page(p.len()));
            // Whatever follows the page is not part of it.
            let two = [&p[..], &p[..]].concat();
            assert_eq!(page_len(&two), PageLen::Page(p.len()));
            assert_eq!(
                page_len(&[&p[..], b"OggS"].concat()),
                PageLen::Page(p.len())
            );
        }
    }

    #[test]
    fn page_len_refuses_a_wrong_capture_pattern_or_version() {
        let p = page(0, 1, 2, &[b"audio"], false);
        for (at, byte) in [(0, b'o'), (3, b's'), (4, 1)] {
            let mut bad = p.clone();
            bad[at] = byte;
            assert_eq!(page_len(&bad), PageLen::NotAPage, "byte {at}");
            // Decided once the fixed header is whole, not before.
            assert_eq!(page_len(&bad[..HEADER_LEN]), PageLen::NotAPage);
            assert_eq!(
                page_len(&bad[..HEADER_LEN - 1]),
                PageLen::Incomplete { len: None }
            );
        }
        assert_eq!(page_len(&[0; 100]), PageLen::NotAPage);
        assert_eq!(page_len(b""), PageLen::Incomplete { len: None });
    }

    #[test]
    fn page_len_of_the_largest_page() {
        let p = page(0, 1, 2, &[&vec![1u8; 255 * 255]], true);
        assert_eq!(p.len(), MAX_PAGE);
        assert_eq!(page_len(&p), PageLen::Page(MAX_PAGE));
        assert_eq!(
            page_len(&p[..MAX_PAGE - 1]),
            PageLen::Incomplete {
                len: Some(MAX_PAGE)
            }
        );
    }

    fn theora_id(w: u32, h: u32) -> Vec<u8> {
        let mut p = b"\x80theora\x03\x02\x01".to_vec();
        p.extend_from_slice(&[0, 20, 0, 15]);
        p.extend_from_slice(&w.to_be_bytes()[1..]);
        p.extend_from_slice(&h.to_be_bytes()[1..]);
        p.extend_from_slice(&[0; 20]);
        p
    }

    fn drain(f: &mut OggFramer) -> Vec<Result<Event, FormatError>> {
        let mut out = Vec::new();
        loop {
            match f.poll() {
                Ok(None) => return out,
                Ok(Some(ev)) => out.push(Ok(ev)),
                Err(e) => {
                    let fatal = e.is_fatal();
                    out.push(Err(e));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }

    fn vorbis_headers(serial: u32) -> Vec<u8> {
        let mut v = page(FLAG_BOS, serial, 0, &[b"\x01vorbis-id"], false);
        v.extend(page(
            0,
            serial,
            1,
            &[b"\x03vorbis-c", b"\x05vorbis-s"],
            false,
        ));
        v
    }

    #[test]
    fn vorbis_headers_then_dense_pages() {
        let hdr = vorbis_headers(7);
        let d1 = page(0, 7, 2, &[b"audio1", b"audio2"], false);
        let d2 = page(0, 7, 3, &[b"audio3"], false);
        let mut f = OggFramer::new();
        f.push(&[hdr.clone(), d1.clone(), d2.clone()].concat());
        let out = drain(&mut f);
        assert_eq!(
            out,
            vec![
                Ok(Event::Headers(hdr.into())),
                Ok(Event::Chunk(Chunk {
                    bytes: d1.into(),
                    sync: true
                })),
                Ok(Event::Chunk(Chunk {
                    bytes: d2.into(),
                    sync: true
                })),
            ]
        );
        assert!(f.dense_sync());
        assert_eq!(f.info().codecs, vec![Codec::Vorbis]);
    }

    #[test]
    fn theora_keyframe_pages_are_the_only_sync_points() {
        let mut hdr = page(FLAG_BOS, 1, 0, &[&theora_id(320, 240)], false);
        hdr.extend(page(FLAG_BOS, 2, 0, &[b"OpusHead.."], false));
        hdr.extend(page(0, 1, 1, &[b"\x81theora-c", b"\x82theora-s"], false));
        hdr.extend(page(0, 2, 1, &[b"OpusTags"], false));
        let key = page(0, 1, 2, &[b"\x00key", b"\x40delta"], false);
        let delta = page(0, 1, 3, &[b"\x40delta"], false);
        let audio = page(0, 2, 2, &[b"opus"], false);
        let mut f = OggFramer::new();
        f.push(&[hdr.clone(), delta.clone(), audio.clone(), key.clone()].concat());
        let out = drain(&mut f);
        let syncs: Vec<bool> = out
            .iter()
            .filter_map(|e| match e {
                Ok(Event::Chunk(c)) => Some(c.sync),
                _ => None,
            })
            .collect();
        assert_eq!(out[0], Ok(Event::Headers(hdr.into())));
        assert_eq!(syncs, vec![false, false, true]);
        assert!(!f.dense_sync());
        let info = f.info();
        assert_eq!(info.codecs, vec![Codec::Theora, Codec::Opus]);
        assert_eq!(info.video_size, Some((320, 240)));
    }

    #[test]
    fn continued_audio_page_is_not_a_sync_point() {
        let big = vec![b'x'; 255];
        let mut f = OggFramer::new();
        let first = page(0, 7, 2, &[&big], true);
        let cont = page(FLAG_CONTINUED, 7, 3, &[b"tail"], false);
        f.push(&[vorbis_headers(7), first, cont].concat());
        let syncs: Vec<bool> = drain(&mut f)
            .into_iter()
            .filter_map(|e| match e {
                Ok(Event::Chunk(c)) => Some(c.sync),
                _ => None,
            })
            .collect();
        assert_eq!(syncs, vec![true, false]);
    }

    #[test]
    fn new_chain_replaces_headers() {
        let mut f = OggFramer::new();
        let chain2 = [
            page(FLAG_BOS, 9, 0, &[b"OpusHead.."], false),
            page(0, 9, 1, &[b"OpusTags"], false),
        ]
        .concat();
        f.push(
            &[
                vorbis_headers(7),
                page(0, 7, 2, &[b"a"], false),
                page(0x04, 7, 3, &[b"eos"], false),
                chain2.clone(),
                page(0, 9, 2, &[b"o"], false),
            ]
            .concat(),
        );
        let out = drain(&mut f);
        let headers: Vec<&Bytes> = out
            .iter()
            .filter_map(|e| match e {
                Ok(Event::Headers(h)) => Some(h),
                _ => None,
            })
            .collect();
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[1], &Bytes::from(chain2));
        assert_eq!(f.info().codecs, vec![Codec::Opus]);
    }

    #[test]
    fn corrupt_page_dropped_and_garbage_reported_once() {
        let mut f = OggFramer::new();
        let d1 = page(0, 7, 2, &[b"good"], false);
        let mut bad = page(0, 7, 3, &[b"bad!"], false);
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        let d3 = page(0, 7, 4, &[b"good"], false);
        let input = [
            vorbis_headers(7),
            d1.clone(),
            b"junkjunk".to_vec(),
            bad.clone(),
            d3.clone(),
        ]
        .concat();
        // Byte by byte: same result as at once.
        for step in [1, input.len()] {
            let mut out = Vec::new();
            let mut f2 = OggFramer::new();
            for piece in input.chunks(step) {
                f2.push(piece);
                out.extend(drain(&mut f2));
            }
            assert_eq!(out.len(), 5, "{out:?}");
            assert_eq!(
                out[2],
                Err(FormatError::Garbage {
                    skipped: 8,
                    what: "Ogg page"
                })
            );
            assert!(matches!(
                out[3],
                Err(FormatError::OggCrc { sequence: 3, .. })
            ));
            assert_eq!(
                out[4],
                Ok(Event::Chunk(Chunk {
                    bytes: d3.clone().into(),
                    sync: true
                }))
            );
        }
        f.push(&input);
        assert_eq!(drain(&mut f).len(), 5);
    }

    #[test]
    fn too_many_streams_and_oversized_headers() {
        let mut f = OggFramer::new();
        for s in 0..=MAX_STREAMS as u32 {
            f.push(&page(FLAG_BOS, s, 0, &[b"OpusHead"], false));
        }
        let out = drain(&mut f);
        assert_eq!(
            out,
            vec![Err(FormatError::TooManyStreams { max: MAX_STREAMS })]
        );

        let mut f = OggFramer::new();
        f.push(&page(FLAG_BOS, 1, 0, &[b"\x01vorbis"], false));
        let big = vec![0u8; 255 * 200];
        for seq in 1..30 {
            f.push(&page(0, 1, seq, &[&big], true));
        }
        let out = drain(&mut f);
        assert_eq!(
            out.last(),
            Some(&Err(FormatError::HeadersTooLarge {
                limit: HEADERS_LIMIT
            }))
        );
        assert!(f.poll().is_err());
    }

    #[test]
    fn flac_headers_end_at_last_metadata_block() {
        let mut bos = b"\x7fFLAC\x01\x00\x00\x00fLaC".to_vec();
        bos.push(0x00); // STREAMINFO, not last
        let hdr = [
            page(FLAG_BOS, 3, 0, &[&bos], false),
            page(0, 3, 1, &[b"\x04comment"], false),
            page(0, 3, 2, &[b"\x81padding"], false),
        ]
        .concat();
        let data = page(0, 3, 3, &[b"\xff\xf8frame"], false);
        let mut f = OggFramer::new();
        f.push(&[hdr.clone(), data].concat());
        let out = drain(&mut f);
        assert_eq!(out[0], Ok(Event::Headers(hdr.into())));
        assert_eq!(out.len(), 2);
        assert_eq!(f.info().codecs, vec![Codec::Flac]);
    }
}
