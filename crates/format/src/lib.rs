//! Sans-IO framing of live media streams.
//!
//! A source pushes bytes; this crate cuts them into [`Chunk`]s that start where a listener may
//! join (**sync points**) and captures the **stream headers** a joining listener needs first.
//! It never does I/O and never blocks: callers feed bytes with [`Demuxer::push`] and drain
//! [`Event`]s with [`Demuxer::poll`] until it returns `Ok(None)` (the explicit "incomplete").
//!
//! ```text
//!   bytes from a source ──► Demuxer ──► detect::sniff  (Ogg / WebM / MP3 / AAC / opaque)
//!                              │
//!                              ▼
//!                         one Framer per format: ogg::OggFramer, webm::WebmFramer,
//!                         mpeg::MpegFramer (MP3 + ADTS), opaque passthrough
//!                              │ units: (bytes, sync)          │ headers
//!                              ▼                               ▼
//!                     coalesced Event::Chunk            Event::Headers
//! ```
//!
//! Map:
//! - [`detect`]: decides the format from the first bytes, never from a Content-Type.
//! - [`ogg`]: Ogg pages (CRC checked), logical streams, codec identification from BOS packets,
//!   header-page capture per chain, Theora keyframe sync points.
//! - [`webm`]: EBML elements of a live (unknown-size) Segment; header capture up to the first
//!   Cluster; Clusters whose first video block is a keyframe are sync points.
//! - [`mpeg`]: MPEG audio (MP3) and AAC-ADTS frame boundaries.
//! - [`ogg_title`]: in-band titles for single-stream Ogg Vorbis/Opus (a new link per title).
//! - [`playout`]: a whole file cut into units timed by the stream's own timestamps, rewritten
//!   pass by pass so that it can be played in a loop (a server's slate, a listener's intro).
//! - [`crc`]: the Ogg CRC-32.
//! - `fuzz_checks` (hidden, not API): the properties the fuzz targets check, as functions the
//!   fuzz targets and the test suite's corpus replay share.
//!
//! **Architecture invariant:** nothing here knows about sockets, HTTP or time. Every buffer
//! is bounded: a framer that cannot find structure within its limit reports an error and
//! skips bytes rather than growing.
#![forbid(unsafe_code)]

pub mod clock;
pub mod crc;
pub mod detect;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod mpeg;
pub mod ogg;
pub mod ogg_title;
pub mod playout;
pub mod webm;

use bytes::{Bytes, BytesMut};

pub use detect::Format;

/// A piece of stream data as it will be fanned out to listeners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The stream bytes, shared (never copied) by every listener.
    pub bytes: Bytes,
    /// A listener may start playback at the first byte of this chunk.
    pub sync: bool,
}

/// What a framer hands back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The stream's headers changed (first headers, or a new chain/segment). Every chunk that
    /// follows belongs to these headers; a joining listener is sent them before any chunk.
    Headers(Bytes),
    /// Stream data.
    Chunk(Chunk),
}

/// A codec identified inside a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// Vorbis audio (Ogg, WebM).
    Vorbis,
    /// Opus audio (Ogg, WebM).
    Opus,
    /// Theora video (Ogg).
    Theora,
    /// FLAC audio (Ogg).
    Flac,
    /// Speex speech (Ogg).
    Speex,
    /// VP8 video (WebM).
    Vp8,
    /// VP9 video (WebM).
    Vp9,
    /// AV1 video (WebM).
    Av1,
    /// H.264 video (Matroska).
    H264,
    /// MPEG audio layer III.
    Mp3,
    /// AAC in ADTS frames.
    Aac,
    /// A track whose codec Agora does not name; relayed all the same.
    Unknown,
}

impl Codec {
    /// Name as Icecast reports it in `subtype`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Vorbis => "Vorbis",
            Codec::Opus => "Opus",
            Codec::Theora => "Theora",
            Codec::Flac => "FLAC",
            Codec::Speex => "Speex",
            Codec::Vp8 => "VP8",
            Codec::Vp9 => "VP9",
            Codec::Av1 => "AV1",
            Codec::H264 => "H264",
            Codec::Mp3 => "MP3",
            Codec::Aac => "AAC",
            Codec::Unknown => "unknown",
        }
    }

    /// Whether the codec is a video codec.
    pub fn is_video(self) -> bool {
        matches!(
            self,
            Codec::Theora | Codec::Vp8 | Codec::Vp9 | Codec::Av1 | Codec::H264
        )
    }
}

/// What the framer learnt about the stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamInfo {
    /// Codecs of the current headers, in track order.
    pub codecs: Vec<Codec>,
    /// Video frame size, when a video track says it.
    pub video_size: Option<(u32, u32)>,
}

impl StreamInfo {
    /// Whether any track is video (picks `video/…` Content-Types).
    pub fn has_video(&self) -> bool {
        self.codecs.iter().any(|c| c.is_video())
    }

    /// Codec names joined by `/`, as Icecast's `subtype` stat.
    pub fn subtype(&self) -> String {
        let names: Vec<&str> = self.codecs.iter().map(|c| c.name()).collect();
        names.join("/")
    }
}

/// Why a framer rejected bytes. Every error is about the source's bytes; after one the framer
/// has skipped past the bad data and polling may continue, unless [`FormatError::is_fatal`].
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// An Ogg page whose CRC does not match: dropped, never relayed.
    #[error("Ogg page with bad CRC dropped (serial {serial:#x}, sequence {sequence}, {len} bytes)")]
    OggCrc {
        /// The page's logical stream.
        serial: u32,
        /// The page's sequence number.
        sequence: u32,
        /// The page's length.
        len: usize,
    },
    /// Bytes that are not the format were skipped to find the next unit.
    #[error("{skipped} bytes of garbage skipped looking for the next {what}")]
    Garbage {
        /// How many bytes were skipped.
        skipped: usize,
        /// What was looked for ("Ogg page", "MP3 frame"...).
        what: &'static str,
    },
    /// An Ogg link with more logical streams than a framer keeps track of.
    #[error("Ogg stream with more than {max} logical streams")]
    TooManyStreams {
        /// The limit.
        max: usize,
    },
    /// WebM/Matroska structure the framer cannot follow (fatal).
    #[error("EBML: {0}")]
    Ebml(&'static str),
    /// Stream headers beyond the bound every framer keeps (fatal).
    #[error("stream headers larger than {limit} bytes")]
    HeadersTooLarge {
        /// The bound.
        limit: usize,
    },
    /// A WebM element larger than the framer's limit (fatal): decided from its head, before
    /// its body is held.
    #[error("EBML element of {size} bytes, larger than the limit of {limit} bytes")]
    ElementTooLarge {
        /// The element's size, ID and size field included, as its head says.
        size: u64,
        /// The bound.
        limit: usize,
    },
}

impl FormatError {
    /// A fatal error means the stream cannot be framed any further; the source should be closed.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            FormatError::Ebml(_)
                | FormatError::HeadersTooLarge { .. }
                | FormatError::ElementTooLarge { .. }
        )
    }
}

/// The interface every format framer implements. Framers buffer input internally (bounded),
/// and hand back one unit (page, frame, element group) per `poll`.
pub trait Framer: Send {
    /// Append bytes read from the source.
    fn push(&mut self, data: &[u8]);
    /// The next event, `Ok(None)` when more input is needed.
    fn poll(&mut self) -> Result<Option<Event>, FormatError>;
    /// True when every unit this framer emits is a sync point (audio-only formats): then
    /// consecutive units may be merged freely.
    fn dense_sync(&self) -> bool;
    /// What is known about the stream so far.
    fn info(&self) -> StreamInfo;
    /// Emit whatever partial unit is buffered (end of stream). Default: nothing.
    fn flush(&mut self) -> Option<Event> {
        None
    }
}

/// Bytes are passed through as they come, every chunk a sync point: used when the format is
/// unknown, so the server still relays it (as Icecast's generic handler does).
#[derive(Debug, Default)]
pub struct Opaque {
    buf: BytesMut,
}

impl Framer for Opaque {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }
    fn poll(&mut self) -> Result<Option<Event>, FormatError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        Ok(Some(Event::Chunk(Chunk {
            bytes: self.buf.split().freeze(),
            sync: true,
        })))
    }
    fn dense_sync(&self) -> bool {
        true
    }
    fn info(&self) -> StreamInfo {
        StreamInfo::default()
    }
}

/// Bytes a stream may begin with before its format is decided: after this much without a
/// recognisable structure the stream is treated as opaque.
pub const SNIFF_LIMIT: usize = 16 * 1024;

/// Upper bound of one merged chunk: a merged chunk is split here so a listener's burst start
/// stays fine-grained.
pub const MAX_CHUNK: usize = 64 * 1024;

/// Detects the format, then drives the matching framer and coalesces its units into chunks.
///
/// Coalescing rule: the units produced by one `push` are merged into one chunk unless a unit
/// is a sync point in a sparse-sync stream (video), or a sync point following units that are
/// not, where a new chunk starts so the sync point stays a chunk boundary. The one copy this
/// makes happens once per source, never per listener, and is at most [`MAX_CHUNK`] bytes: a
/// unit that would take the merged chunk past it starts a chunk of its own (a large WebM
/// element is never copied).
///
/// Ownership rule: every chunk under [`MAX_CHUNK`] and every `Headers` comes out in memory of
/// its own (a merged chunk is a copy anyway; a lone one is copied). A `Bytes` split from a
/// framer's buffer keeps that whole buffer alive, and a source can make most of a buffer
/// bytes that are dropped (header pages copied into a capture, bad pages, garbage) with a
/// tiny page kept at its end: the mount's queue, which counts the bytes of its chunks, would
/// then hold 30-byte pages that each kept 100 KiB or more alive. Larger chunks are WebM
/// elements, buffered in an allocation of their own size.
pub struct Demuxer {
    state: State,
    pending: Vec<Event>,
    /// An error met while gathering units, reported on the poll after the data before it.
    stashed_error: Option<FormatError>,
    /// The WebM framer's element limit ([`webm::WebmFramer::with_max_element`]).
    max_element: usize,
}

enum State {
    Sniffing(BytesMut),
    Framing(Format, Box<dyn Framer>),
}

impl std::fmt::Debug for Demuxer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Demuxer");
        match &self.state {
            State::Sniffing(b) => d.field("sniffing", &b.len()),
            State::Framing(fmt, _) => d.field("format", fmt),
        };
        d.finish()
    }
}

impl Default for Demuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl Demuxer {
    /// A demuxer that sniffs the format from the first bytes.
    pub fn new() -> Self {
        Demuxer {
            state: State::Sniffing(BytesMut::new()),
            pending: Vec::new(),
            stashed_error: None,
            max_element: webm::MAX_ELEMENT as usize,
        }
    }

    /// A demuxer for a known format (skips sniffing).
    pub fn with_format(format: Format) -> Self {
        let max_element = webm::MAX_ELEMENT as usize;
        Demuxer {
            state: State::Framing(format, framer_for(format, max_element)),
            pending: Vec::new(),
            stashed_error: None,
            max_element,
        }
    }

    /// Refuse WebM elements larger than `bytes` ([`FormatError::ElementTooLarge`]) instead of
    /// [`webm::MAX_ELEMENT`]: the largest unit a source can make the framer hold. Ogg pages
    /// (at most [`ogg::MAX_PAGE`]) and MPEG frames are small by their format. Call it before
    /// the first push.
    pub fn max_element(mut self, bytes: usize) -> Self {
        self.max_element = bytes;
        if let State::Framing(format, _) = self.state {
            self.state = State::Framing(format, framer_for(format, bytes));
        }
        self
    }

    /// The detected format, once decided.
    pub fn format(&self) -> Option<Format> {
        match &self.state {
            State::Sniffing(_) => None,
            State::Framing(f, _) => Some(*f),
        }
    }

    /// What the framer learnt so far (codecs, video size); empty while sniffing.
    pub fn info(&self) -> StreamInfo {
        match &self.state {
            State::Sniffing(_) => StreamInfo::default(),
            State::Framing(_, fr) => fr.info(),
        }
    }

    /// Feed bytes from the source.
    pub fn push(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Framing(_, fr) => fr.push(data),
            State::Sniffing(buf) => {
                buf.extend_from_slice(data);
                let decided = match detect::sniff(buf) {
                    detect::Sniff::Found(f) => Some(f),
                    detect::Sniff::NeedMore if buf.len() < SNIFF_LIMIT => None,
                    detect::Sniff::NeedMore => Some(Format::Opaque),
                };
                if let Some(format) = decided {
                    let mut fr = framer_for(format, self.max_element);
                    fr.push(buf);
                    self.state = State::Framing(format, fr);
                }
            }
        }
    }

    /// Signal end of input: a partial unit still buffered is emitted if the format allows it.
    pub fn finish(&mut self) -> Option<Event> {
        match &mut self.state {
            State::Sniffing(buf) if !buf.is_empty() => Some(Event::Chunk(Chunk {
                bytes: buf.split().freeze(),
                sync: true,
            })),
            State::Sniffing(_) => None,
            State::Framing(_, fr) => fr.flush().map(owned),
        }
    }

    /// Next event, coalesced; `Ok(None)` when more input is needed. After an `Err` that is not
    /// fatal, keep polling.
    pub fn poll(&mut self) -> Result<Option<Event>, FormatError> {
        if let Some(e) = self.stashed_error.take() {
            return Err(e);
        }
        let State::Framing(_, fr) = &mut self.state else {
            return Ok(None);
        };
        // A boundary event carried over from the previous poll: headers go out alone; a sync
        // chunk starts the next batch.
        if matches!(self.pending.first(), Some(Event::Headers(_))) {
            return Ok(Some(merge(&mut self.pending)));
        }
        loop {
            match fr.poll() {
                Ok(Some(ev)) => {
                    // A sync unit also starts a new chunk when the pending one does not begin
                    // at a sync point (an ID3 tag, a continued Ogg page): merged, the sync
                    // point would be lost inside it.
                    let pending_sync = match self.pending.first() {
                        Some(Event::Chunk(c)) => c.sync,
                        _ => true,
                    };
                    let boundary = match &ev {
                        Event::Headers(_) => true,
                        Event::Chunk(c) => c.sync && (!fr.dense_sync() || !pending_sync),
                    };
                    if boundary && !self.pending.is_empty() {
                        let out = merge(&mut self.pending);
                        self.pending.push(ev);
                        return Ok(Some(out));
                    }
                    if matches!(ev, Event::Headers(_)) {
                        return Ok(Some(owned(ev)));
                    }
                    // Merging copies: a unit that would take the chunk past MAX_CHUNK goes
                    // into a chunk of its own, so no large unit is ever copied.
                    let held: usize = self.pending.iter().map(event_len).sum();
                    if !self.pending.is_empty() && held + event_len(&ev) > MAX_CHUNK {
                        let out = merge(&mut self.pending);
                        self.pending.push(ev);
                        return Ok(Some(out));
                    }
                    self.pending.push(ev);
                    if held + event_len(self.pending.last().expect("pushed")) >= MAX_CHUNK {
                        return Ok(Some(merge(&mut self.pending)));
                    }
                }
                Ok(None) if self.pending.is_empty() => return Ok(None),
                Ok(None) => return Ok(Some(merge(&mut self.pending))),
                Err(e) if self.pending.is_empty() => return Err(e),
                Err(e) => {
                    // Emit the data before the error now, report the error on the next poll.
                    self.stashed_error = Some(e);
                    return Ok(Some(merge(&mut self.pending)));
                }
            }
        }
    }
}

fn event_len(ev: &Event) -> usize {
    match ev {
        Event::Headers(b) => b.len(),
        Event::Chunk(c) => c.bytes.len(),
    }
}

/// Merge pending events: a lone event is returned as is (or [`owned`]); several chunks are
/// joined.
fn merge(pending: &mut Vec<Event>) -> Event {
    if pending.len() == 1 {
        return owned(pending.pop().expect("one pending event"));
    }
    let len: usize = pending.iter().map(event_len).sum();
    let mut out = BytesMut::with_capacity(len);
    let mut sync = false;
    for (i, ev) in pending.drain(..).enumerate() {
        if let Event::Chunk(c) = ev {
            if i == 0 {
                sync = c.sync;
            }
            out.extend_from_slice(&c.bytes);
        }
    }
    Event::Chunk(Chunk {
        bytes: out.freeze(),
        sync,
    })
}

/// A lone event in memory of its own when it is headers or a chunk under [`MAX_CHUNK`] (see
/// [`Demuxer`]'s ownership rule): a copy of at most that, or of the headers.
fn owned(ev: Event) -> Event {
    match ev {
        Event::Headers(b) => Event::Headers(Bytes::copy_from_slice(&b)),
        Event::Chunk(c) if c.bytes.len() < MAX_CHUNK => Event::Chunk(Chunk {
            bytes: Bytes::copy_from_slice(&c.bytes),
            sync: c.sync,
        }),
        ev => ev,
    }
}

fn framer_for(format: Format, max_element: usize) -> Box<dyn Framer> {
    match format {
        Format::Ogg => Box::new(ogg::OggFramer::new()),
        Format::WebM => Box::new(webm::WebmFramer::with_max_element(max_element)),
        Format::Mp3 => Box::new(mpeg::MpegFramer::new(mpeg::Kind::Mp3)),
        Format::Aac => Box::new(mpeg::MpegFramer::new(mpeg::Kind::Adts)),
        Format::Opaque => Box::new(Opaque::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A framer that replays scripted units, to pin the coalescing rule.
    struct Script {
        units: std::collections::VecDeque<Result<Event, FormatError>>,
        dense: bool,
    }

    impl Framer for Script {
        fn push(&mut self, _: &[u8]) {}
        fn poll(&mut self) -> Result<Option<Event>, FormatError> {
            self.units.pop_front().transpose()
        }
        fn dense_sync(&self) -> bool {
            self.dense
        }
        fn info(&self) -> StreamInfo {
            StreamInfo::default()
        }
    }

    fn chunk(b: &'static [u8], sync: bool) -> Result<Event, FormatError> {
        Ok(Event::Chunk(Chunk {
            bytes: Bytes::from_static(b),
            sync,
        }))
    }

    fn demux(
        units: Vec<Result<Event, FormatError>>,
        dense: bool,
    ) -> Vec<Result<Event, FormatError>> {
        let mut d = Demuxer {
            state: State::Framing(
                Format::Ogg,
                Box::new(Script {
                    units: units.into(),
                    dense,
                }),
            ),
            pending: Vec::new(),
            stashed_error: None,
            max_element: 0,
        };
        let mut out = Vec::new();
        loop {
            match d.poll() {
                Ok(None) => return out,
                other => out.push(other.map(|e| e.expect("some"))),
            }
        }
    }

    #[test]
    fn sparse_sync_points_stay_chunk_boundaries() {
        let out = demux(
            vec![
                Ok(Event::Headers(Bytes::from_static(b"H"))),
                chunk(b"a", true),
                chunk(b"b", false),
                chunk(b"c", true),
                chunk(b"d", false),
            ],
            false,
        );
        assert_eq!(
            out,
            vec![
                Ok(Event::Headers(Bytes::from_static(b"H"))),
                chunk(b"ab", true),
                chunk(b"cd", true),
            ]
        );
    }

    #[test]
    fn dense_units_merge_and_errors_come_after_the_data_before_them() {
        let err = FormatError::Garbage {
            skipped: 3,
            what: "x",
        };
        let out = demux(
            vec![
                chunk(b"a", true),
                chunk(b"b", true),
                Err(err.clone()),
                chunk(b"c", true),
            ],
            true,
        );
        assert_eq!(out, vec![chunk(b"ab", true), Err(err), chunk(b"c", true)]);
    }

    #[test]
    fn dense_sync_point_after_a_non_sync_unit_starts_a_chunk() {
        let out = demux(
            vec![
                chunk(b"tag", false),
                chunk(b"a", true),
                chunk(b"b", true),
                chunk(b"c", false),
            ],
            true,
        );
        assert_eq!(out, vec![chunk(b"tag", false), chunk(b"abc", true)]);
    }

    #[test]
    fn a_unit_that_would_take_a_chunk_past_max_chunk_is_not_copied() {
        static BIG: [u8; MAX_CHUNK + 1] = [7; MAX_CHUNK + 1];
        static HALF: [u8; MAX_CHUNK / 2 + 1] = [8; MAX_CHUNK / 2 + 1];
        let out = demux(
            vec![
                chunk(b"a", true),
                chunk(&BIG, false),
                chunk(b"b", false),
                chunk(&HALF, false),
                chunk(&HALF, false),
            ],
            false,
        );
        let lens: Vec<usize> = out
            .iter()
            .map(|e| match e {
                Ok(Event::Chunk(c)) => c.bytes.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(lens, vec![1, MAX_CHUNK + 1, 1 + HALF.len(), HALF.len()]);
        // The large unit is the framer's own bytes, not a copy.
        let Ok(Event::Chunk(c)) = &out[1] else {
            panic!()
        };
        assert_eq!(c.bytes.as_ptr(), BIG.as_ptr());
    }

    #[test]
    fn opaque_bytes_pass_through() {
        let mut d = Demuxer::with_format(Format::Opaque);
        d.push(b"hello");
        assert_eq!(
            d.poll(),
            Ok(Some(Event::Chunk(Chunk {
                bytes: Bytes::from_static(b"hello"),
                sync: true
            })))
        );
        assert_eq!(d.poll(), Ok(None));
    }
}
