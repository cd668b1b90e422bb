//! A whole media file made a stream that can be played in a loop: the server's own source of
//! a `loop-file` mount (a "we'll be right back" slate) and the `intro` a listener gets first.
//!
//! [`Playout::new`] takes the file whole, checks it and cuts it into units, each with the
//! moment of the stream's own timeline at which it ends (media time, read from the stream:
//! the caller decides what a moment is on a clock). [`Playout::pass`] hands back the units of
//! one pass of the loop, rewritten so that a player can follow from one pass to the next:
//!
//! | format | unit | its end | a later pass |
//! |---|---|---|---|
//! | MP3, AAC-ADTS | a frame | samples so far / sample rate | the same frames: frames simply continue |
//! | Ogg | a page | its granule position, per codec (Opus, Vorbis, FLAC, Speex, Theora) | a new chain: every page's serial moved and its granule position moved on by the passes before (the CRC recomputed), headers included |
//! | WebM | a Cluster | its last block's timecode | Clusters only, their timecodes moved on by one pass |
//!
//! - MPEG: ID3v2 tags and a first frame that is a Xing/Info/VBRI tag (a file's length and seek
//!   table, which would tell a player the stream ends) are left out.
//! - Ogg: a file may be chained itself; each pass's serials differ from the previous pass's,
//!   so each pass begins a new chain (new headers for the server's framer and the players).
//! - WebM: a second EBML header mid-stream cannot be followed, so the headers go once, at the
//!   start of the first pass. They are the file's EBML header, a Segment of unknown size and
//!   its children before the first Cluster, without SeekHead, Cues and Void (file offsets that
//!   mean nothing in a stream) and without Info's Duration (a live stream has none). Every
//!   Cluster is rebuilt once, at load, with an 8-byte size and an 8-byte Timecode (and without
//!   Position and PrevSize), so a later pass changes those 8 bytes only. Pass `n` adds `n`
//!   times the file's span (first to last block, plus the mean gap between blocks) to each
//!   Cluster's timecode: timecodes keep increasing.
//!
//! The file is bounded ([`MAX_FILE`]) and every unit a slice of it, except the rebuilt WebM
//! Clusters (one copy at load) and later passes' Ogg pages and Clusters (a copy per unit per
//! pass, for the one reader of a mount's loop, never per listener).

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::detect::{self, Format, Sniff};
use crate::mpeg::{self, MpegFramer};
use crate::ogg::{PageLen, page_len};
use crate::webm::{self, Head, read_head};
use crate::{Event, Framer, crc};

/// Largest file a [`Playout`] takes: a slate of minutes of audio or a short video loop; a file
/// is read whole and held in memory for as long as the server runs.
pub const MAX_FILE: usize = 64 * 1024 * 1024;

/// Why a file cannot be played as a stream.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlayoutError {
    /// Larger than [`MAX_FILE`].
    #[error("{len} bytes, more than the {limit} bytes a played file may have")]
    TooLarge {
        /// The file's length.
        len: u64,
        /// The bound.
        limit: usize,
    },
    /// Not a format Agora frames.
    #[error("not Ogg, WebM, MP3 or AAC-ADTS (no format Agora frames is found at its start)")]
    UnknownFormat,
    /// The file's structure is broken at a place.
    #[error("{what} at byte {at}")]
    Malformed {
        /// What is wrong.
        what: &'static str,
        /// Where, from the file's start.
        at: usize,
    },
    /// Nothing to play.
    #[error("no {0} in the file")]
    Empty(&'static str),
    /// An Ogg file whose time cannot be read, so it cannot be paced.
    #[error(
        "the time of its Ogg pages cannot be read (none of its streams is Opus, Vorbis, FLAC, Speex or Theora)"
    )]
    NoTime,
}

/// One unit of a pass: its bytes and the end of its media on the pass's timeline.
#[derive(Debug, Clone)]
struct Unit {
    bytes: Bytes,
    end: Duration,
    /// Ogg: the clock of the page's logical stream, to move its granule position on in later
    /// passes.
    clock: Option<Clock>,
}

/// A file cut into timed units, ready to be played in a loop (see the module documentation).
#[derive(Debug, Clone)]
pub struct Playout {
    format: Format,
    /// WebM: the headers, sent once before the first pass. Empty for other formats.
    head: Bytes,
    units: Vec<Unit>,
    /// One pass's length.
    period: Duration,
    /// WebM: one pass's length in timecode ticks.
    period_ticks: u64,
}

/// Added (times the pass number) to every Ogg serial of a later pass: odd, so `n` passes
/// apart never share a serial before 2^32 passes.
const SERIAL_STEP: u32 = 0x9E37_79B9;

/// Where a rebuilt Cluster holds its Timecode's 8 bytes: after the Cluster ID (4), its 8-byte
/// size, the Timecode ID `E7` and its size `88`.
const CLUSTER_TIMECODE_AT: usize = 14;

impl Playout {
    /// Check and cut a whole file.
    pub fn new(file: Bytes) -> Result<Playout, PlayoutError> {
        if file.len() > MAX_FILE {
            return Err(PlayoutError::TooLarge {
                len: file.len() as u64,
                limit: MAX_FILE,
            });
        }
        let format = match detect::sniff(&file) {
            Sniff::Found(f @ (Format::Ogg | Format::WebM | Format::Mp3 | Format::Aac)) => f,
            _ => return Err(PlayoutError::UnknownFormat),
        };
        let (head, units, period, period_ticks) = match format {
            Format::Mp3 | Format::Aac => {
                let (units, end) = mpeg_units(&file, format == Format::Mp3)?;
                (Bytes::new(), units, end, 0)
            }
            Format::Ogg => {
                let (units, end) = ogg_units(&file)?;
                (Bytes::new(), units, end, 0)
            }
            _ => {
                let w = webm_units(&file)?;
                (w.head, w.units, w.period, w.period_ticks)
            }
        };
        Ok(Playout {
            format,
            head,
            units,
            period,
            period_ticks,
        })
    }

    /// The file's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// How long one pass lasts on the stream's timeline.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Pass `n` of the loop (from 0): each unit with the moment its media ends, from the
    /// start of pass 0. Pass 0 begins with the WebM headers, at moment zero.
    pub fn pass(&self, n: u64) -> impl Iterator<Item = (Duration, Bytes)> + '_ {
        let offset = self
            .period
            .saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
        let head = (n == 0 && !self.head.is_empty()).then(|| (Duration::ZERO, self.head.clone()));
        head.into_iter().chain(
            self.units
                .iter()
                .map(move |u| (offset + u.end, self.rewrite(n, u))),
        )
    }

    /// The first pass's bytes in one piece (an intro): one copy.
    pub fn first_pass_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        for (_, b) in self.pass(0) {
            out.extend_from_slice(&b);
        }
        out.freeze()
    }

    fn rewrite(&self, n: u64, unit: &Unit) -> Bytes {
        let (clock, unit) = (unit.clock, &unit.bytes);
        if n == 0 {
            return unit.clone();
        }
        match self.format {
            Format::Ogg => {
                // Truncation is the point: serials wrap.
                let step = SERIAL_STEP.wrapping_mul(n as u32);
                let mut page = BytesMut::from(&unit[..]);
                let serial = u32::from_le_bytes([page[14], page[15], page[16], page[17]]);
                page[14..18].copy_from_slice(&serial.wrapping_add(step).to_le_bytes());
                // Granule positions moved on by the passes before, as WebM timecodes are: the
                // slate's timeline keeps going as a live source's does, so a player moved onto
                // it mid-pass (a fallback) does not see its time go back to the file's start
                // (ffmpeg's own correction then repeated a timestamp). Header pages (granule 0)
                // and pages where no packet ends (all ones) stay as they are.
                let mut g = [0u8; 8];
                g.copy_from_slice(&page[6..14]);
                let granule = u64::from_le_bytes(g);
                if let Some(clock) = clock
                    && granule != 0
                    && granule != u64::MAX
                {
                    let moved = granule.saturating_add(clock.granules(self.period, n));
                    page[6..14].copy_from_slice(&moved.to_le_bytes());
                }
                let crc = crc::ogg_page_crc(&page);
                page[22..26].copy_from_slice(&crc.to_le_bytes());
                page.freeze()
            }
            Format::WebM => {
                let mut cluster = BytesMut::from(&unit[..]);
                let at = CLUSTER_TIMECODE_AT;
                let mut tc = [0u8; 8];
                tc.copy_from_slice(&cluster[at..at + 8]);
                let moved =
                    u64::from_be_bytes(tc).saturating_add(self.period_ticks.saturating_mul(n));
                cluster[at..at + 8].copy_from_slice(&moved.to_be_bytes());
                cluster.freeze()
            }
            _ => unit.clone(),
        }
    }
}

/// MP3 or ADTS frames, timed by their samples; ID3v2 tags and a leading Xing/Info/VBRI frame
/// left out.
fn mpeg_units(file: &[u8], mp3: bool) -> Result<(Vec<Unit>, Duration), PlayoutError> {
    let kind = if mp3 {
        mpeg::Kind::Mp3
    } else {
        mpeg::Kind::Adts
    };
    let mut framer = MpegFramer::new(kind);
    framer.push(file);
    let (mut units, mut end, mut first) = (Vec::new(), Duration::ZERO, true);
    loop {
        match framer.poll() {
            Ok(Some(Event::Chunk(c))) if c.sync => {
                let h = mpeg::frame_header(kind, &c.bytes).ok_or(PlayoutError::Malformed {
                    what: "a frame without a header",
                    at: 0,
                })?;
                let info_frame = mp3
                    && first
                    && c.bytes.get(4..48).is_some_and(|b| {
                        b.windows(4)
                            .any(|w| w == b"Xing" || w == b"Info" || w == b"VBRI")
                    });
                first = false;
                if info_frame || h.sample_rate == 0 {
                    continue;
                }
                end += Duration::from_nanos(
                    u64::from(h.samples) * 1_000_000_000 / u64::from(h.sample_rate),
                );
                units.push(Unit {
                    clock: None,
                    bytes: c.bytes,
                    end,
                });
            }
            // ID3v2 tags, and nothing else: the framer has no headers for MPEG.
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) if e.is_fatal() => {
                return Err(PlayoutError::Malformed {
                    what: "MPEG audio the framer cannot follow",
                    at: 0,
                });
            }
            // Garbage skipped: a file's trailing tag (ID3v1, APE), say.
            Err(_) => {}
        }
    }
    if units.is_empty() {
        return Err(PlayoutError::Empty(if mp3 {
            "MP3 frame"
        } else {
            "ADTS frame"
        }));
    }
    Ok((units, end))
}

/// How an Ogg logical stream's granule position maps to time.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// Audio: the granule counts samples at this rate.
    Samples(u64),
    /// Theora: keyframe number << shift | frames since it, at `num / den` frames a second.
    Theora { shift: u32, num: u64, den: u64 },
}

impl Clock {
    /// From a logical stream's first packet (on its BOS page).
    pub(crate) fn from_bos(packet: &[u8]) -> Option<Clock> {
        let u32_le = |at: usize| {
            packet
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let u32_be = |at: usize| {
            packet
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let clock = if packet.starts_with(b"OpusHead") {
            Clock::Samples(48_000)
        } else if packet.starts_with(b"\x01vorbis") {
            Clock::Samples(u64::from(u32_le(12)?))
        } else if packet.starts_with(b"Speex   ") {
            Clock::Samples(u64::from(u32_le(36)?))
        } else if packet.starts_with(b"\x7fFLAC") {
            // STREAMINFO begins at 17 (mapping header 13, metadata block header 4); its
            // sample rate is 20 bits at its byte 10.
            let b = packet.get(27..30)?;
            Clock::Samples(u64::from(b[0]) << 12 | u64::from(b[1]) << 4 | u64::from(b[2]) >> 4)
        } else if packet.starts_with(b"\x80theora") {
            let (b40, b41) = (*packet.get(40)?, *packet.get(41)?);
            Clock::Theora {
                shift: u32::from(((b40 & 3) << 3) | (b41 >> 5)),
                num: u64::from(u32_be(22)?),
                den: u64::from(u32_be(26)?),
            }
        } else {
            return None;
        };
        match clock {
            Clock::Samples(0) | Clock::Theora { num: 0, .. } => None,
            c => Some(c),
        }
    }

    /// What `n` passes of `period` add to a granule position of this clock.
    pub(crate) fn granules(self, period: Duration, n: u64) -> u64 {
        let span = period.as_nanos().saturating_mul(u128::from(n));
        let moved = match self {
            Clock::Samples(rate) => span * u128::from(rate) / 1_000_000_000,
            // Whole frames on the keyframe number: the granule of a frame `k` frames later.
            Clock::Theora { shift, num, den } if shift < 64 && den > 0 => {
                (span * u128::from(num) / u128::from(den) / 1_000_000_000) << shift
            }
            Clock::Theora { .. } => 0,
        };
        u64::try_from(moved).unwrap_or(u64::MAX)
    }

    pub(crate) fn time(self, granule: u64) -> Duration {
        let nanos = match self {
            Clock::Samples(rate) => u128::from(granule) * 1_000_000_000 / u128::from(rate),
            Clock::Theora { shift, num, den } => {
                let frames = match shift {
                    0 => granule,
                    s if s >= 64 => 0,
                    s => (granule >> s) + (granule & ((1u64 << s) - 1)),
                };
                u128::from(frames) * u128::from(den) * 1_000_000_000 / u128::from(num)
            }
        };
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Ogg pages (CRC checked), timed by their granule positions: the latest end any stream has
/// reached, across the file's own chains.
fn ogg_units(file: &Bytes) -> Result<(Vec<Unit>, Duration), PlayoutError> {
    let mut clocks: HashMap<u32, Clock> = HashMap::new();
    let (mut units, mut base, mut end) = (Vec::new(), Duration::ZERO, Duration::ZERO);
    let (mut in_data, mut timed, mut p) = (false, false, 0usize);
    while p < file.len() {
        let len = match page_len(&file[p..]) {
            PageLen::Page(len) => len,
            PageLen::Incomplete { .. } => {
                return Err(PlayoutError::Malformed {
                    what: "a truncated Ogg page",
                    at: p,
                });
            }
            PageLen::NotAPage => {
                return Err(PlayoutError::Malformed {
                    what: "bytes that are not an Ogg page",
                    at: p,
                });
            }
        };
        let page = file.slice(p..p + len);
        if crc::ogg_page_crc(&page) != u32::from_le_bytes([page[22], page[23], page[24], page[25]])
        {
            return Err(PlayoutError::Malformed {
                what: "an Ogg page with a bad CRC",
                at: p,
            });
        }
        let serial = u32::from_le_bytes([page[14], page[15], page[16], page[17]]);
        let mut g = [0u8; 8];
        g.copy_from_slice(&page[6..14]);
        let granule = u64::from_le_bytes(g);
        if page[5] & 0x02 != 0 {
            // A BOS page after other pages: the file's next chain, whose granules restart.
            if in_data {
                base = end;
                clocks.clear();
                in_data = false;
            }
            let first = page.get(27 + usize::from(page[26])..).unwrap_or_default();
            if let Some(clock) = Clock::from_bos(first) {
                clocks.insert(serial, clock);
            }
        } else {
            in_data = true;
        }
        // All bits set: no packet ends on this page.
        if granule != u64::MAX
            && let Some(clock) = clocks.get(&serial)
        {
            timed = true;
            end = end.max(base + clock.time(granule));
        }
        let clock = clocks.get(&serial).copied();
        units.push(Unit {
            bytes: page,
            end,
            clock,
        });
        p += len;
    }
    if units.is_empty() {
        return Err(PlayoutError::Empty("Ogg page"));
    }
    if !timed {
        return Err(PlayoutError::NoTime);
    }
    Ok((units, end))
}

// Matroska element IDs this module rewrites or drops (with their length markers).
const SEEK_HEAD: u32 = 0x114D_9B74;
const CUES: u32 = 0x1C53_BB6B;
const VOID: u32 = 0xEC;
const INFO: u32 = 0x1549_A966;
const DURATION: u32 = 0x4489;
pub(crate) const TIMECODE_SCALE: u32 = 0x2A_D7B1;
pub(crate) const TIMECODE: u32 = 0xE7;
const POSITION: u32 = 0xA7;
const PREV_SIZE: u32 = 0xAB;

/// An unknown size, 8 bytes long.
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

struct Webm {
    head: Bytes,
    units: Vec<Unit>,
    period: Duration,
    period_ticks: u64,
}

/// The element head at `file[at..]`, which must be whole.
fn head_at(file: &[u8], at: usize) -> Result<Head, PlayoutError> {
    match read_head(&file[at..]) {
        Ok(Some(h)) => Ok(h),
        Ok(None) => Err(PlayoutError::Malformed {
            what: "a truncated EBML element",
            at,
        }),
        Err(_) => Err(PlayoutError::Malformed {
            what: "an invalid EBML element",
            at,
        }),
    }
}

/// The end of the element whose head `h` is at `at`: its size must be known and inside `end`.
fn element_end(h: Head, at: usize, end: usize) -> Result<usize, PlayoutError> {
    let size = h.size.ok_or(PlayoutError::Malformed {
        what: "an element of unknown size other than a Segment or a Cluster",
        at,
    })?;
    usize::try_from(size)
        .ok()
        .and_then(|s| (at + h.len).checked_add(s))
        .filter(|&e| e <= end)
        .ok_or(PlayoutError::Malformed {
            what: "an element that runs past its parent or the file",
            at,
        })
}

/// An 8-byte EBML size.
fn size8(n: usize) -> [u8; 8] {
    let mut b = (n as u64).to_be_bytes();
    b[0] = 0x01;
    b
}

/// The relative timecode of a (Simple)Block body, after its track number.
pub(crate) fn block_time(body: &[u8]) -> Option<i64> {
    let (_, len, _) = webm::vint(body).ok()??;
    let t = body.get(len..len + 2)?;
    Some(i64::from(i16::from_be_bytes([t[0], t[1]])))
}

fn webm_units(file: &[u8]) -> Result<Webm, PlayoutError> {
    let mut head = BytesMut::new();
    let mut clusters: Vec<(BytesMut, i64)> = Vec::new();
    let (mut scale, mut p, mut in_segment) = (1_000_000u64, 0usize, false);
    // Every block's time, in ticks: the first, the last, how many.
    let (mut first, mut last, mut blocks) = (i64::MAX, i64::MIN, 0u64);
    let bad = |what, at| PlayoutError::Malformed { what, at };
    while p < file.len() {
        let h = head_at(file, p)?;
        match h.id {
            webm::EBML if p == 0 => {
                let end = element_end(h, p, file.len())?;
                head.extend_from_slice(&file[p..end]);
                p = end;
            }
            webm::EBML => {
                return Err(bad("a second EBML header (one stream per file)", p));
            }
            _ if p == 0 => return Err(bad("no EBML header first", 0)),
            webm::SEGMENT if !in_segment => {
                in_segment = true;
                head.extend_from_slice(&file[p..p + h.id_len]);
                head.extend_from_slice(&UNKNOWN_SIZE);
                p += h.len;
            }
            webm::CLUSTER => {
                let start = p + h.len;
                let end = match h.size {
                    Some(_) => element_end(h, p, file.len())?,
                    None => file.len(),
                };
                let mut rest = BytesMut::new();
                let (mut base, mut at, mut cluster_last) = (0u64, start, i64::MIN);
                let mut times = Vec::new();
                while at < end {
                    let c = head_at(file, at)?;
                    // An unknown-size Cluster ends at the next Segment child.
                    if h.size.is_none() && c.id_len == 4 {
                        break;
                    }
                    let c_end = element_end(c, at, end)?;
                    let body = &file[at + c.len..c_end];
                    match c.id {
                        TIMECODE => base = webm::uint(body).ok_or(bad("a bad Timecode", at))?,
                        POSITION | PREV_SIZE => {}
                        id => {
                            let t = match id {
                                webm::SIMPLE_BLOCK => block_time(body),
                                webm::BLOCK_GROUP => webm::Children(body)
                                    .find(|(id, _)| *id == webm::BLOCK)
                                    .and_then(|(_, b)| block_time(b)),
                                _ => None,
                            };
                            times.extend(t);
                            rest.extend_from_slice(&file[at..c_end]);
                        }
                    }
                    at = c_end;
                }
                let base_t = i64::try_from(base).map_err(|_| bad("a bad Timecode", p))?;
                for t in times {
                    let t = base_t.saturating_add(t);
                    first = first.min(t);
                    last = last.max(t);
                    cluster_last = cluster_last.max(t);
                    blocks += 1;
                }
                // Units go out in file order at their end times: a Cluster that ends before
                // the one before it would be played out of time, and a later pass's moved
                // timecodes would go back.
                let ends = cluster_last.max(base_t);
                if clusters.last().is_some_and(|(_, prev)| ends < *prev) {
                    return Err(bad("a Cluster earlier than the one before it", p));
                }
                last = last.max(ends);
                let mut cluster = BytesMut::with_capacity(22 + rest.len());
                cluster.put_u32(webm::CLUSTER);
                cluster.put_slice(&size8(10 + rest.len()));
                cluster.put_slice(&[TIMECODE as u8, 0x88]);
                cluster.put_u64(base);
                cluster.put_slice(&rest);
                clusters.push((cluster, ends));
                p = at;
            }
            _ => {
                let end = element_end(h, p, file.len())?;
                if clusters.is_empty() && in_segment {
                    match h.id {
                        SEEK_HEAD | CUES | VOID => {}
                        INFO => {
                            let mut info = BytesMut::new();
                            let mut at = p + h.len;
                            while at < end {
                                let c = head_at(file, at)?;
                                let c_end = element_end(c, at, end)?;
                                if c.id == TIMECODE_SCALE {
                                    scale = webm::uint(&file[at + c.len..c_end])
                                        .filter(|&s| s > 0)
                                        .ok_or(bad("a bad TimecodeScale", at))?;
                                }
                                if c.id != DURATION {
                                    info.extend_from_slice(&file[at..c_end]);
                                }
                                at = c_end;
                            }
                            head.put_u32(INFO);
                            head.put_slice(&size8(info.len()));
                            head.put_slice(&info);
                        }
                        _ => head.extend_from_slice(&file[p..end]),
                    }
                }
                // After the first Cluster: Cues, Tags and the like, which a stream does without.
                p = end;
            }
        }
    }
    if clusters.is_empty() || blocks == 0 {
        return Err(PlayoutError::Empty("Cluster with a block"));
    }
    let span = u64::try_from(last - first).unwrap_or(0);
    // The mean gap between blocks closes the loop: the next pass's first block comes that
    // long after this pass's last.
    let gap = (span / blocks.saturating_sub(1).max(1)).max(1);
    let period_ticks = span + gap;
    let time = |ticks: u64| Duration::from_nanos(ticks.saturating_mul(scale));
    let units = clusters
        .into_iter()
        .map(|(bytes, t)| Unit {
            clock: None,
            bytes: bytes.freeze(),
            end: time(u64::try_from(t - first).unwrap_or(0)),
        })
        .collect();
    Ok(Webm {
        head: head.freeze(),
        units,
        period: time(period_ticks),
        period_ticks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ogg_page(serial: u32, flags: u8, granule: u64, body: &[u8]) -> Vec<u8> {
        let mut p = b"OggS\0".to_vec();
        p.push(flags);
        p.extend_from_slice(&granule.to_le_bytes());
        p.extend_from_slice(&serial.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&[0; 4]);
        p.push(1);
        p.push(u8::try_from(body.len()).expect("short body"));
        p.extend_from_slice(body);
        let crc = crc::ogg_page_crc(&p);
        p[22..26].copy_from_slice(&crc.to_le_bytes());
        p
    }

    fn opus_file(serial: u32) -> Vec<u8> {
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 2, 0, 0, 0x80, 0xBB, 0, 0, 0, 0, 0]);
        [
            ogg_page(serial, 0x02, 0, &head),
            ogg_page(serial, 0, 0, b"OpusTags\0\0\0\0\0\0\0\0"),
            ogg_page(serial, 0, 48_000, b"audio one"),
            ogg_page(serial, 0x04, 96_000, b"audio two"),
        ]
        .concat()
    }

    #[test]
    fn ogg_pages_are_timed_by_granule_and_later_passes_are_new_chains() {
        let p = Playout::new(Bytes::from(opus_file(7))).expect("playout");
        assert_eq!(p.format(), Format::Ogg);
        assert_eq!(p.period(), Duration::from_secs(2));
        let first: Vec<_> = p.pass(0).collect();
        let ends: Vec<_> = first.iter().map(|(t, _)| t.as_millis()).collect();
        assert_eq!(ends, [0, 0, 1000, 2000]);
        let second: Vec<_> = p.pass(1).collect();
        assert_eq!(second[0].0, Duration::from_secs(2));
        for ((_, a), (_, b)) in first.iter().zip(&second) {
            let serial = |b: &Bytes| u32::from_le_bytes([b[14], b[15], b[16], b[17]]);
            assert_eq!(serial(b), serial(a).wrapping_add(SERIAL_STEP));
            assert_eq!(a[27..], b[27..], "packet data untouched");
            let crc = u32::from_le_bytes([b[22], b[23], b[24], b[25]]);
            assert_eq!(crc, crc::ogg_page_crc(b));
        }
        let bad = {
            let mut f = opus_file(7);
            f[30] ^= 1;
            f
        };
        assert_eq!(
            Playout::new(Bytes::from(bad)).map(|_| ()),
            Err(PlayoutError::Malformed {
                what: "an Ogg page with a bad CRC",
                at: 0
            })
        );
    }

    fn el(id: &[u8], body: &[u8]) -> Vec<u8> {
        let size = u8::try_from(body.len()).expect("short");
        assert!(size < 0x7F);
        [id, &[0x80 | size], body].concat()
    }

    #[test]
    fn webm_headers_go_once_and_cluster_timecodes_keep_increasing() {
        let block = |t: u8| el(&[0xA3], &[0x81, 0, t, 0x80, 1, 2, 3]);
        let file = [
            el(&[0x1A, 0x45, 0xDF, 0xA3], &el(&[0x42, 0x82], b"webm")),
            vec![
                0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            ],
            el(&[0x11, 0x4D, 0x9B, 0x74], b"seek"),
            el(
                &[0x15, 0x49, 0xA9, 0x66],
                &[
                    el(&[0x2A, 0xD7, 0xB1], &[0x0F, 0x42, 0x40]),
                    el(&[0x44, 0x89], &[0x40, 0x8F, 0x40, 0, 0, 0, 0, 0]),
                ]
                .concat(),
            ),
            el(&[0x16, 0x54, 0xAE, 0x6B], &el(&[0xAE], &el(&[0xD7], &[1]))),
            el(
                &[0x1F, 0x43, 0xB6, 0x75],
                &[el(&[0xE7], &[0]), el(&[0xA7], &[0]), block(0), block(20)].concat(),
            ),
            el(
                &[0x1F, 0x43, 0xB6, 0x75],
                &[el(&[0xE7], &[40]), block(0), block(20)].concat(),
            ),
            el(&[0x1C, 0x53, 0xBB, 0x6B], b"cues"),
        ]
        .concat();
        let p = Playout::new(Bytes::from(file)).expect("playout");
        assert_eq!(p.format(), Format::WebM);
        // Blocks at 0, 20, 40, 60 ms: a span of 60 and a mean gap of 20.
        assert_eq!(p.period(), Duration::from_millis(80));
        let first: Vec<_> = p.pass(0).collect();
        assert_eq!(first.len(), 3, "headers and two Clusters");
        let head = &first[0].1;
        assert!(!head.windows(4).any(|w| w == b"seek"), "no SeekHead");
        assert!(!head.windows(2).any(|w| w == [0x44, 0x89]), "no Duration");
        let second: Vec<_> = p.pass(1).collect();
        assert_eq!(second.len(), 2, "Clusters only");
        let tc = |b: &Bytes| {
            let mut t = [0u8; 8];
            t.copy_from_slice(&b[CLUSTER_TIMECODE_AT..CLUSTER_TIMECODE_AT + 8]);
            u64::from_be_bytes(t)
        };
        assert_eq!([tc(&first[1].1), tc(&first[2].1)], [0, 40]);
        assert_eq!([tc(&second[0].1), tc(&second[1].1)], [80, 120]);
        assert_eq!(second[1].0, Duration::from_millis(80 + 60));
        // The framer takes the rebuilt stream as a live WebM stream.
        let mut d = crate::Demuxer::new();
        for (_, b) in p.pass(0).chain(p.pass(1)) {
            d.push(&b);
        }
        let mut chunks = 0;
        while let Some(ev) = d.poll().expect("frames") {
            if let Event::Chunk(c) = ev {
                chunks += usize::from(c.sync);
            }
        }
        assert_eq!(chunks, 4, "every Cluster a sync point");
    }

    #[test]
    fn oversized_and_unknown_files_are_refused() {
        let big = Bytes::from(vec![0u8; MAX_FILE + 1]);
        assert!(matches!(
            Playout::new(big),
            Err(PlayoutError::TooLarge { .. })
        ));
        assert_eq!(
            Playout::new(Bytes::from_static(b"fLaC\0\0\0\0")).map(|_| ()),
            Err(PlayoutError::UnknownFormat)
        );
    }
}

#[cfg(test)]
mod granule_tests {
    use super::*;

    /// A later pass's pages carry granule positions moved on by the passes before (the
    /// slate's time keeps going, as a live source's), the CRC right; header pages keep 0.
    #[test]
    fn later_passes_move_ogg_granules_on() {
        let file = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/corpus/playout/seed-opus"
        ))
        .expect("the Opus seed");
        let p = Playout::new(Bytes::from(file)).expect("plays");
        let granules = |n: u64| -> Vec<u64> {
            p.pass(n)
                .map(|(_, page)| {
                    assert_eq!(
                        crc::ogg_page_crc(&page),
                        u32::from_le_bytes([page[22], page[23], page[24], page[25]])
                    );
                    u64::from_le_bytes(page[6..14].try_into().expect("8 bytes"))
                })
                .collect()
        };
        let (first, third) = (granules(0), granules(2));
        let step = Clock::Samples(48_000).granules(p.period(), 2);
        assert!(step > 0);
        for (a, b) in first.iter().zip(&third) {
            match *a {
                0 | u64::MAX => assert_eq!(a, b),
                a => assert_eq!(a + step, *b),
            }
        }
    }
}
