//! MPEG audio (MP3, and its layers I and II) and AAC-ADTS framing.
//!
//! Both are elementary streams of self-contained frames, each starting with a header that
//! carries a sync word and enough to compute the frame's length. There is no container and no
//! stream header: a listener may start at any frame, so every frame is a sync point
//! ([`Framer::dense_sync`]) and no [`Event::Headers`] is ever emitted.
//!
//! ```text
//!   [ID3v2 tag] [frame][frame][frame] .. garbage .. [frame][frame] ..
//!    sync=false  sync   sync   sync     (dropped)    sync   sync
//! ```
//!
//! **Frame model.** MPEG audio: a 4-byte header (11-bit sync `0xFFE`, version, layer, bitrate
//! index, sample-rate index, padding); the length is `(12·bitrate/rate + padding)·4` for
//! layer I, `144·bitrate/rate + padding` for layer II and for MPEG-1 layer III, and
//! `72·bitrate/rate + padding` for MPEG-2/2.5 layer III. Free format (bitrate index 0) has no
//! length in the header and is not supported. ADTS: a 7-byte header (12-bit sync `0xFFF`,
//! layer `00`) with the frame length, header included, in a 13-bit field.
//!
//! **Resync rule.** A frame is emitted, whole and as one zero-copy [`Chunk`], when its header is
//! valid and either
//! - it starts exactly where the previous emitted frame ended and belongs to the same stream
//!   (same version, layer and sample rate; for ADTS also profile and channel configuration):
//!   the stream is *locked*, so a frame goes out as soon as it is complete; or
//! - the header at its end is also valid and of the same stream (*confirmation*): needed at
//!   the start, after a tag, after garbage, and when the stream's parameters change. Until
//!   those next header bytes arrive the framer waits (`Ok(None)`).
//!
//! Anything else at a frame boundary is garbage: the framer drops bytes up to the next
//! position that holds a confirmed frame (or that might, once more bytes come) and reports the
//! run once, as a non-fatal [`FormatError::Garbage`], just before the frame that ends it. The
//! relayed stream therefore holds only whole frames.
//!
//! An ID3v2 tag found at a frame boundary (typically the stream start) is passed through as
//! it arrives, in chunks with `sync = false`: relayed as is, but never where a listener
//! starts. It is streamed, not buffered, so a large tag (cover art) costs no memory.
//!
//! **Memory bound:** the buffer never holds more than one maximal frame plus its successor's
//! header plus the last push ([`Kind::max_frame_len`]).

use bytes::{Buf, BytesMut};

use crate::{Chunk, Codec, Event, FormatError, Framer, StreamInfo};

/// Which frame syntax a stream uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// MPEG-1/2/2.5 audio, layers I, II and III.
    Mp3,
    /// AAC in ADTS frames.
    Adts,
}

impl Kind {
    /// Bytes needed to read a frame header (ADTS: without the optional CRC).
    pub const fn header_len(self) -> usize {
        match self {
            Kind::Mp3 => 4,
            Kind::Adts => 7,
        }
    }

    /// The longest frame the header can describe: MPEG-2.5 layer II at 160 kbit/s and 8 kHz
    /// with padding (2881 bytes); the ADTS 13-bit length field's maximum (8191).
    pub const fn max_frame_len(self) -> usize {
        match self {
            Kind::Mp3 => 2881,
            Kind::Adts => 8191,
        }
    }

    /// The codec this kind of stream carries, as reported in [`StreamInfo`].
    pub const fn codec(self) -> Codec {
        match self {
            Kind::Mp3 => Codec::Mp3,
            Kind::Adts => Codec::Aac,
        }
    }

    const fn what(self) -> &'static str {
        match self {
            Kind::Mp3 => "MPEG audio frame",
            Kind::Adts => "ADTS frame",
        }
    }
}

/// The version field of a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// MPEG-1 (32, 44.1, 48 kHz).
    Mpeg1,
    /// MPEG-2 low sampling frequencies (16, 22.05, 24 kHz), or ADTS with the ID bit set.
    Mpeg2,
    /// The unofficial MPEG-2.5 extension (8 to 12 kHz).
    Mpeg25,
    /// ADTS with the ID bit clear.
    Mpeg4,
}

/// What one frame header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameHeader {
    /// MPEG audio or ADTS.
    pub kind: Kind,
    /// The version field.
    pub version: Version,
    /// MPEG audio layer, 1 to 3; 0 for ADTS.
    pub layer: u8,
    /// MPEG audio: the frame's bitrate. ADTS has none in its header.
    pub bitrate_kbps: Option<u32>,
    /// Samples per second.
    pub sample_rate: u32,
    /// 1 or 2 for MPEG audio; the ADTS channel configuration's count (0 when the layout is
    /// given by a program config element inside the frame).
    pub channels: u8,
    /// ADTS: the AAC audio object type (1 Main, 2 LC, 3 SSR, 4 LTP).
    pub aac_object_type: Option<u8>,
    /// Whole frame, header included.
    pub frame_len: usize,
    /// Samples per channel in the frame.
    pub samples: u32,
}

impl FrameHeader {
    /// Whether `other` may be the next frame of the same stream: the parameters an encoder
    /// never changes between two frames.
    pub fn same_stream(&self, other: &FrameHeader) -> bool {
        self.kind == other.kind
            && self.version == other.version
            && self.layer == other.layer
            && self.sample_rate == other.sample_rate
            && (self.kind == Kind::Mp3
                || (self.aac_object_type == other.aac_object_type
                    && self.channels == other.channels))
    }
}

/// A three-way answer about a prefix of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe<T> {
    /// More bytes are needed to tell.
    Need,
    /// Not here.
    No,
    /// Found.
    Yes(T),
}

/// Kbit/s by bitrate index, `[0]` being free format (unsupported) and index 15 invalid.
const V1_L1: [u16; 15] = [
    0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
];
const V1_L2: [u16; 15] = [
    0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
];
const V1_L3: [u16; 15] = [
    0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
];
const V2_L1: [u16; 15] = [
    0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
];
const V2_L23: [u16; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];

/// MPEG-1 sample rates; MPEG-2 halves them, MPEG-2.5 quarters them.
const MPEG_RATES: [u32; 3] = [44100, 48000, 32000];

const ADTS_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Parse the frame header at the start of `buf`; `None` when it is not a valid header of this
/// kind or `buf` is shorter than [`Kind::header_len`].
pub fn frame_header(kind: Kind, buf: &[u8]) -> Option<FrameHeader> {
    match kind {
        Kind::Mp3 => mpeg_audio_header(buf),
        Kind::Adts => adts_header(buf),
    }
}

fn mpeg_audio_header(buf: &[u8]) -> Option<FrameHeader> {
    let &[0xFF, b1, b2, b3, ..] = buf else {
        return None;
    };
    if b1 & 0xE0 != 0xE0 {
        return None;
    }
    let version = match (b1 >> 3) & 3 {
        0 => Version::Mpeg25,
        2 => Version::Mpeg2,
        3 => Version::Mpeg1,
        _ => return None,
    };
    // Layer bits 00 are reserved here (with a 12-bit sync they mean ADTS).
    let layer = match (b1 >> 1) & 3 {
        1 => 3,
        2 => 2,
        3 => 1,
        _ => return None,
    };
    let bitrate_index = usize::from(b2 >> 4);
    let rate_index = usize::from((b2 >> 2) & 3);
    let table = match (version, layer) {
        (Version::Mpeg1, 1) => &V1_L1,
        (Version::Mpeg1, 2) => &V1_L2,
        (Version::Mpeg1, _) => &V1_L3,
        (_, 1) => &V2_L1,
        _ => &V2_L23,
    };
    let kbps = u32::from(*table.get(bitrate_index)?);
    let base_rate = *MPEG_RATES.get(rate_index)?;
    if kbps == 0 {
        return None;
    }
    let sample_rate = match version {
        Version::Mpeg1 => base_rate,
        Version::Mpeg2 => base_rate / 2,
        _ => base_rate / 4,
    };
    let padding = u32::from((b2 >> 1) & 1);
    let bitrate = kbps * 1000;
    let (frame_len, samples) = match (layer, version) {
        (1, _) => ((12 * bitrate / sample_rate + padding) * 4, 384),
        (2, _) | (_, Version::Mpeg1) => (144 * bitrate / sample_rate + padding, 1152),
        _ => (72 * bitrate / sample_rate + padding, 576),
    };
    Some(FrameHeader {
        kind: Kind::Mp3,
        version,
        layer,
        bitrate_kbps: Some(kbps),
        sample_rate,
        channels: if b3 >> 6 == 3 { 1 } else { 2 },
        aac_object_type: None,
        frame_len: usize::try_from(frame_len).ok()?,
        samples,
    })
}

fn adts_header(buf: &[u8]) -> Option<FrameHeader> {
    let &[0xFF, b1, b2, b3, b4, b5, b6, ..] = buf else {
        return None;
    };
    // 12-bit sync, then ID, layer (must be 00), protection_absent.
    if b1 & 0xF6 != 0xF0 {
        return None;
    }
    let sample_rate = *ADTS_RATES.get(usize::from((b2 >> 2) & 0xF))?;
    let header_len = if b1 & 1 == 1 { 7 } else { 9 };
    let frame_len = (usize::from(b3 & 3) << 11) | (usize::from(b4) << 3) | usize::from(b5 >> 5);
    if frame_len < header_len {
        return None;
    }
    let channel_config = ((b2 & 1) << 2) | (b3 >> 6);
    Some(FrameHeader {
        kind: Kind::Adts,
        version: if b1 & 0x08 != 0 {
            Version::Mpeg2
        } else {
            Version::Mpeg4
        },
        layer: 0,
        bitrate_kbps: None,
        sample_rate,
        channels: if channel_config == 7 {
            8
        } else {
            channel_config
        },
        aac_object_type: Some((b2 >> 6) + 1),
        frame_len,
        samples: 1024 * (u32::from(b6 & 3) + 1),
    })
}

/// The header at the start of `buf`: `Need` when `buf` is too short to tell.
fn header_at(kind: Kind, buf: &[u8]) -> Probe<FrameHeader> {
    if buf.len() >= kind.header_len() {
        return frame_header(kind, buf).map_or(Probe::No, Probe::Yes);
    }
    // A short prefix is rejected as early as its bytes allow.
    let sync_ok = match buf {
        [] => true,
        [b0] => *b0 == 0xFF,
        [b0, b1, ..] => {
            *b0 == 0xFF
                && match kind {
                    Kind::Mp3 => b1 & 0xE0 == 0xE0 && b1 & 0x06 != 0,
                    Kind::Adts => b1 & 0xF6 == 0xF0,
                }
        }
    };
    if sync_ok { Probe::Need } else { Probe::No }
}

/// Whether `buf` starts with a *confirmed* frame: a valid header followed, at the frame's end,
/// by another valid header of the same stream. `Need` while the bytes to tell are missing.
pub fn confirmed_frame(kind: Kind, buf: &[u8]) -> Probe<FrameHeader> {
    let header = match header_at(kind, buf) {
        Probe::Yes(h) => h,
        Probe::Need => return Probe::Need,
        Probe::No => return Probe::No,
    };
    match header_at(kind, buf.get(header.frame_len..).unwrap_or_default()) {
        Probe::Yes(next) if next.same_stream(&header) => Probe::Yes(header),
        Probe::Need => Probe::Need,
        Probe::Yes(_) | Probe::No => Probe::No,
    }
}

/// The total length of the ID3v2 tag `buf` starts with: 10 header bytes, the 28-bit syncsafe
/// size, and 10 more when the footer flag is set. `Need` while `buf` could still be one.
pub fn id3v2_len(buf: &[u8]) -> Probe<usize> {
    let n = buf.len().min(3);
    if buf[..n] != b"ID3"[..n] {
        return Probe::No;
    }
    let &[_, _, _, major, revision, flags, s0, s1, s2, s3, ..] = buf else {
        return Probe::Need;
    };
    if major == 0xFF || revision == 0xFF || (s0 | s1 | s2 | s3) & 0x80 != 0 {
        return Probe::No;
    }
    let size = (usize::from(s0) << 21)
        | (usize::from(s1) << 14)
        | (usize::from(s2) << 7)
        | usize::from(s3);
    let footer = if flags & 0x10 != 0 { 10 } else { 0 };
    Probe::Yes(10 + size + footer)
}

/// A garbage run this long is reported even before a frame ends it, so a stream that never
/// resyncs is still visible in the logs.
const GARBAGE_REPORT: usize = 64 * 1024;

/// Frames of an MPEG audio or ADTS stream, one [`Event::Chunk`] per frame.
#[derive(Debug)]
pub struct MpegFramer {
    kind: Kind,
    buf: BytesMut,
    /// Bytes of an ID3v2 tag still to pass through.
    tag_left: usize,
    /// The buffer starts at a unit boundary (stream start, after a frame or a tag), where an
    /// ID3v2 tag may begin.
    at_boundary: bool,
    /// The last frame emitted, while the buffer starts right after it.
    locked: Option<FrameHeader>,
    /// The last frame emitted.
    last: Option<FrameHeader>,
    /// Garbage dropped and not reported yet.
    skipped: usize,
}

impl MpegFramer {
    /// A framer for MPEG audio or ADTS frames.
    pub fn new(kind: Kind) -> Self {
        MpegFramer {
            kind,
            buf: BytesMut::new(),
            tag_left: 0,
            at_boundary: true,
            locked: None,
            last: None,
            skipped: 0,
        }
    }

    /// MPEG audio or ADTS, as the framer was made for.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The header of the last frame emitted (bitrate, sample rate, channels).
    pub fn last_header(&self) -> Option<FrameHeader> {
        self.last
    }

    /// The frame at the buffer start, if it may be emitted now.
    fn frame_at_start(&self) -> Probe<FrameHeader> {
        let Some(prev) = self.locked else {
            return confirmed_frame(self.kind, &self.buf);
        };
        match header_at(self.kind, &self.buf) {
            Probe::Yes(h) if h.same_stream(&prev) => {
                if self.buf.len() >= h.frame_len {
                    Probe::Yes(h)
                } else {
                    Probe::Need
                }
            }
            // The parameters changed: a new encoder, or garbage that looks like a header.
            Probe::Yes(_) => confirmed_frame(self.kind, &self.buf),
            other => other,
        }
    }

    /// The first position from `from` where a confirmed frame starts or may start once more
    /// bytes come; the buffer length when there is none.
    fn resync_point(&self, from: usize) -> usize {
        let buf = &self.buf[..];
        (from..buf.len())
            .filter(|&p| buf[p] == 0xFF)
            .find(|&p| !matches!(confirmed_frame(self.kind, &buf[p..]), Probe::No))
            .unwrap_or(buf.len())
    }

    fn take_garbage_report(&mut self) -> FormatError {
        FormatError::Garbage {
            skipped: std::mem::take(&mut self.skipped),
            what: self.kind.what(),
        }
    }
}

impl Framer for MpegFramer {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    fn poll(&mut self) -> Result<Option<Event>, FormatError> {
        loop {
            if self.tag_left > 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let n = self.tag_left.min(self.buf.len());
                self.tag_left -= n;
                return Ok(Some(Event::Chunk(Chunk {
                    bytes: self.buf.split_to(n).freeze(),
                    sync: false,
                })));
            }
            if self.at_boundary {
                match id3v2_len(&self.buf) {
                    Probe::Need => return Ok(None),
                    Probe::Yes(len) => {
                        self.tag_left = len;
                        self.locked = None;
                        continue;
                    }
                    Probe::No => {}
                }
            }
            match self.frame_at_start() {
                Probe::Need => return Ok(None),
                Probe::Yes(_) if self.skipped > 0 => return Err(self.take_garbage_report()),
                Probe::Yes(h) => {
                    self.locked = Some(h);
                    self.last = Some(h);
                    self.at_boundary = true;
                    return Ok(Some(Event::Chunk(Chunk {
                        bytes: self.buf.split_to(h.frame_len).freeze(),
                        sync: true,
                    })));
                }
                Probe::No => {
                    self.locked = None;
                    self.at_boundary = false;
                    let skip = self.resync_point(1);
                    self.buf.advance(skip);
                    self.skipped += skip;
                    if self.skipped >= GARBAGE_REPORT {
                        return Err(self.take_garbage_report());
                    }
                }
            }
        }
    }

    fn dense_sync(&self) -> bool {
        true
    }

    fn info(&self) -> StreamInfo {
        StreamInfo {
            codecs: self.last.map(|_| self.kind.codec()).into_iter().collect(),
            video_size: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp3(b1: u8, b2: u8, b3: u8) -> Option<FrameHeader> {
        frame_header(Kind::Mp3, &[0xFF, b1, b2, b3])
    }

    #[test]
    fn mpeg_audio_frame_lengths() {
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz: 417 bytes, 418 padded.
        let h = mp3(0xFB, 0x90, 0x00).expect("valid");
        assert_eq!(
            (
                h.version,
                h.layer,
                h.bitrate_kbps,
                h.sample_rate,
                h.frame_len
            ),
            (Version::Mpeg1, 3, Some(128), 44100, 417)
        );
        assert_eq!(mp3(0xFB, 0x92, 0x00).map(|h| h.frame_len), Some(418));
        // MPEG-1 layer II, 384 kbit/s, 32 kHz, padded: 1729.
        assert_eq!(mp3(0xFD, 0xEA, 0x00).map(|h| h.frame_len), Some(1729));
        // MPEG-1 layer I, 448 kbit/s, 32 kHz, padded: (168 + 1) * 4.
        assert_eq!(mp3(0xFF, 0xEA, 0x00).map(|h| h.frame_len), Some(676));
        // MPEG-2 layer III, 32 kbit/s, 22.05 kHz: 72 * 32000 / 22050 = 104, 576 samples.
        let h = mp3(0xF3, 0x40, 0xC0).expect("valid");
        assert_eq!(
            (h.version, h.sample_rate, h.frame_len, h.samples, h.channels),
            (Version::Mpeg2, 22050, 104, 576, 1)
        );
        // MPEG-2.5 layer II, 160 kbit/s, 8 kHz, padded: the longest frame.
        let h = mp3(0xE5, 0xEA, 0x00).expect("valid");
        assert_eq!(h.frame_len, Kind::Mp3.max_frame_len());
        // Reserved version, reserved layer, free format, bad bitrate, reserved rate.
        for (b1, b2) in [
            (0xEB, 0x90),
            (0xF9, 0x90),
            (0xFB, 0x00),
            (0xFB, 0xF0),
            (0xFB, 0x9C),
        ] {
            assert_eq!(mp3(b1, b2, 0), None, "{b1:#x} {b2:#x}");
        }
    }

    #[test]
    fn adts_header_fields() {
        // AAC LC, 44.1 kHz, stereo, 371 bytes, no CRC.
        let len = 371usize;
        let hdr = [
            0xFF,
            0xF1,
            0x50,
            0x80 | (len >> 11) as u8,
            (len >> 3) as u8,
            ((len & 7) << 5) as u8 | 0x1F,
            0xFC,
        ];
        let h = frame_header(Kind::Adts, &hdr).expect("valid");
        assert_eq!(
            (h.aac_object_type, h.sample_rate, h.channels, h.frame_len),
            (Some(2), 44100, 2, 371)
        );
        assert_eq!(frame_header(Kind::Mp3, &hdr), None);
        let mut bad = hdr;
        bad[2] = 0x50 | (13 << 2);
        assert_eq!(frame_header(Kind::Adts, &bad), None, "reserved rate");
        let mut short = hdr;
        short[3] = 0x80;
        short[4] = 0;
        short[5] = 6 << 5;
        assert_eq!(
            frame_header(Kind::Adts, &short),
            None,
            "length below header"
        );
    }

    #[test]
    fn id3v2_sizes() {
        assert_eq!(id3v2_len(b""), Probe::Need);
        assert_eq!(id3v2_len(b"ID"), Probe::Need);
        assert_eq!(id3v2_len(b"IE"), Probe::No);
        assert_eq!(id3v2_len(b"ID3\x04\x00\x00\x00\x00\x01"), Probe::Need);
        assert_eq!(
            id3v2_len(b"ID3\x04\x00\x00\x00\x00\x01\x7f"),
            Probe::Yes(10 + 255)
        );
        assert_eq!(
            id3v2_len(b"ID3\x04\x00\x10\x00\x00\x01\x00"),
            Probe::Yes(10 + 128 + 10)
        );
        assert_eq!(id3v2_len(b"ID3\x04\x00\x00\x00\x00\x80\x00"), Probe::No);
    }

    /// Between pushes the buffer holds less than a frame plus the next header, whatever comes:
    /// real frames, noise, or runs of sync bytes that look like headers.
    #[test]
    fn memory_stays_bounded_and_long_garbage_is_reported() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut seed = 0x2545_F491_4F6C_DD1D_u64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // Plenty of 0xFF so that headers are tried all the time.
                    if seed.is_multiple_of(5) {
                        0xFF
                    } else {
                        seed as u8
                    }
                })
                .collect()
        };
        for (kind, file) in [(Kind::Mp3, "mp3.mp3"), (Kind::Adts, "aac.aac")] {
            let real = std::fs::read(dir.join(file)).unwrap_or_default();
            let data = [noise(200_000), real.clone(), noise(3000), real].concat();
            let mut f = MpegFramer::new(kind);
            let mut reports = 0;
            for piece in data.chunks(997) {
                f.push(piece);
                loop {
                    match f.poll() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(FormatError::Garbage { .. }) => reports += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                assert!(
                    f.buf.len() < kind.max_frame_len() + kind.header_len(),
                    "{kind:?}: {} bytes buffered",
                    f.buf.len()
                );
            }
            // 200 kB of noise is reported in 64 KiB runs, then once more at each resync.
            assert!(reports >= 3, "{kind:?}: {reports} reports");
            assert_eq!(f.info().codecs, vec![kind.codec()]);
        }
    }

    #[test]
    fn a_large_tag_streams_through_without_buffering() {
        let mut f = MpegFramer::new(Kind::Mp3);
        f.push(b"ID3\x03\x00\x00\x00\x01\x00\x00abc");
        let Ok(Some(Event::Chunk(c))) = f.poll() else {
            panic!("tag chunk expected");
        };
        assert!(!c.sync);
        assert_eq!(c.bytes.len(), 13);
        assert_eq!(f.poll(), Ok(None));
        f.push(&[0; 100]);
        assert!(matches!(f.poll(), Ok(Some(Event::Chunk(c))) if c.bytes.len() == 100));
        assert_eq!(f.tag_left, 10 + (1 << 14) - 113);
    }
}
