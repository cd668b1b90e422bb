//! WebM/Matroska framing of live streams.
//!
//! **Element model.** Matroska is EBML: a tree of elements, each an ID (a 1–4 byte VINT kept
//! with its length marker, e.g. `1F 43 B6 75`), a size (a 1–8 byte VINT; all value bits set
//! means *unknown*), then the body. A live muxer cannot seek back to patch sizes, so the
//! Segment (and, with some muxers, each Cluster) has an unknown size and ends only where
//! something that cannot be its child begins. A live WebM stream looks like this:
//!
//! ```text
//!   EBML header │ Segment head (size unknown) │ SeekHead Void Info Tracks Tags .. │
//!   └─────────────────────────── Event::Headers (once) ───────────────────────────┘
//!   Cluster head  Timecode  SimpleBlock(audio)  SimpleBlock(video) │ SimpleBlock │ .. │ Cluster
//!   └────── one chunk, sync = the video block is a keyframe ───────┘└ sync=false ┘
//! ```
//!
//! The framer only descends into the Segment and into Clusters; every other element is taken
//! whole (by its size) and its body parsed only for Tracks and for blocks.
//!
//! **Header capture.** The EBML header, the Segment head and every Segment child before the
//! first Cluster are held in the buffer and emitted as one [`Event::Headers`] when that Cluster
//! begins; a listener who joins is sent them first. Tracks is parsed on the way for
//! [`StreamInfo`] (codecs in track order, the first video track's size) and to learn which
//! track number is the video track; the info changes when the Headers event is emitted.
//! Headers are bounded by [`HEADERS_LIMIT`]; beyond it the stream is rejected
//! ([`FormatError::HeadersTooLarge`]). A new EBML header after the first Cluster (a source that
//! restarted its encoder, or files played back to back) starts a new capture and so a new
//! `Headers` event; one before the first Cluster replaces the capture, which described nothing.
//!
//! The one byte the framer changes is there: a known Segment size (a file, not a live stream)
//! is rewritten as unknown, in place and with the same length. A listener who joins later
//! receives fewer bytes than a known size says, so its demuxer would look for the end of the
//! Segment in the middle of whatever comes next (ffmpeg: "File ended prematurely").
//!
//! **Cluster sync rule.** A listener can start at a Cluster, never inside one (a block needs its
//! Cluster's timecode), and with video only at a Cluster whose first video block is a keyframe
//! (as Icecast 2.5 does; 2.4 joins at any Cluster and the decoder gets a delta frame first).
//! Muxers do not promise Clusters start at keyframes: ffmpeg writing to a pipe closes a Cluster
//! about every second whatever the video does. So a Cluster's head, Timecode and whatever
//! precedes the first block of the video track, up to and including that block, are held and
//! emitted as *one* chunk whose `sync` says whether that block is a keyframe (SimpleBlock: flag
//! `0x80`; BlockGroup: no ReferenceBlock). Every later element of the Cluster is its own chunk
//! with `sync = false`, emitted as soon as it is complete: the framer never waits for a Cluster
//! to end. Without a video track each Cluster head is a sync chunk on its own. A Cluster with no
//! video block within its first [`PREFIX_LIMIT`] bytes, or none at all, is not a sync point.
//! Since units inside a Cluster are never sync points, [`Framer::dense_sync`] is false even for
//! audio: the Demuxer must keep every Cluster start a chunk boundary.
//!
//! A Cluster of known size ends at its size; one of unknown size ends at the first element with
//! a 4-byte ID (every Segment child and the EBML header have one, no Cluster child does). A
//! joining listener gets Headers then a Cluster: the elements in between are simply absent,
//! which is valid Matroska.
//!
//! **Errors.** Bytes before the first EBML magic are skipped and reported once as a non-fatal
//! [`FormatError::Garbage`]. EBML has no resync marker inside a Segment, so malformed VINTs,
//! unknown sizes other than on a Segment or a Cluster and elements overrunning their Cluster
//! are fatal [`FormatError::Ebml`]; an element larger than the framer's limit
//! ([`MAX_ELEMENT`] unless [`WebmFramer::with_max_element`] says otherwise) is a fatal
//! [`FormatError::ElementTooLarge`], decided from its head before any of its body is held.
//! After a fatal error the framer drops input and repeats that error.
//!
//! **Memory bound:** the buffer holds at most the headers ([`HEADERS_LIMIT`]), or a Cluster
//! prefix ([`PREFIX_LIMIT`]) plus one element (the limit), plus the bytes of the last push.
//! Output is zero-copy: every event is a `split_to(..).freeze()` of the input buffer. A large
//! element (over [`EXACT_FROM`]) gets a buffer of exactly its size once its head is read,
//! (plus the rest of one push) instead of growing by doubling: growing a 16 MiB element that way allocated, copied and
//! freed 1, 2, 4, 8 and 16 MiB blocks on the way, and the chunk then pinned a block up to
//! twice its size (the allocator keeps freed blocks for a while: a source of 16 MiB elements
//! held ~100 MB of RSS, BENCHMARKS.md).

use bytes::{Buf, Bytes, BytesMut};

use crate::{Chunk, Codec, Event, FormatError, Framer, StreamInfo};

/// Largest header block (EBML header, Segment head, Segment children before the first Cluster).
/// Real ones are a few hundred bytes; attachments (cover art, fonts) are what makes them grow.
pub const HEADERS_LIMIT: usize = 1024 * 1024;

/// How far into a Cluster the first video block is looked for before the Cluster is emitted as
/// a non-sync chunk.
pub const PREFIX_LIMIT: usize = 1024 * 1024;

/// Default largest element taken whole after the headers (a block, Cues, Tags...), for
/// [`WebmFramer::new`]. A 4K keyframe is a few MiB; a larger size is taken for corruption (or
/// hostility) rather than buffered. The server sets its own (`max-element-size`).
pub const MAX_ELEMENT: u64 = 16 * 1024 * 1024;

/// Elements of more than this many bytes are buffered in an allocation of exactly their size
/// (see the module doc); smaller ones share the growing buffer.
pub const EXACT_FROM: usize = 64 * 1024;

const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

// Element IDs, with their length markers, as Matroska spells them.
pub(crate) const EBML: u32 = 0x1A45_DFA3;
pub(crate) const SEGMENT: u32 = 0x1853_8067;
pub(crate) const CLUSTER: u32 = 0x1F43_B675;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
pub(crate) const SIMPLE_BLOCK: u32 = 0xA3;
pub(crate) const BLOCK_GROUP: u32 = 0xA0;
pub(crate) const BLOCK: u32 = 0xA1;
const REFERENCE_BLOCK: u32 = 0xFB;

/// TrackType values.
const TRACK_TYPE_VIDEO: u64 = 1;
const TRACK_TYPE_AUDIO: u64 = 2;

/// An element's ID and size, as read from the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) id: u32,
    /// Bytes of the ID (1–4).
    pub(crate) id_len: usize,
    /// Body size; `None` when unknown.
    pub(crate) size: Option<u64>,
    /// Bytes of ID and size together.
    pub(crate) len: usize,
}

/// A VINT at the start of `buf`: its value without the length marker, its length, and whether
/// every value bit is set. `Ok(None)` when more bytes are needed; `Err` when the first byte is
/// zero (a length over 8).
pub(crate) fn vint(buf: &[u8]) -> Result<Option<(u64, usize, bool)>, ()> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first == 0 {
        return Err(());
    }
    let len = first.leading_zeros() as usize + 1;
    let Some(bytes) = buf.get(..len) else {
        return Ok(None);
    };
    // A u16 shift: for len 8 the marker is the whole first byte and no value bit is left.
    let mask = (0xFF_u16 >> len) as u8;
    let value = bytes[1..]
        .iter()
        .fold(u64::from(first & mask), |v, &b| v << 8 | u64::from(b));
    let all_ones = value == (1u64 << (7 * len)) - 1;
    Ok(Some((value, len, all_ones)))
}

/// The element head at the start of `buf`; `Ok(None)` when more bytes are needed.
pub(crate) fn read_head(buf: &[u8]) -> Result<Option<Head>, FormatError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let id_len = first.leading_zeros() as usize + 1;
    if id_len > 4 {
        return Err(FormatError::Ebml("invalid element ID"));
    }
    let Some(id_bytes) = buf.get(..id_len) else {
        return Ok(None);
    };
    let id = id_bytes.iter().fold(0u32, |v, &b| v << 8 | u32::from(b));
    match vint(&buf[id_len..]) {
        Err(()) => Err(FormatError::Ebml("invalid element size")),
        Ok(None) => Ok(None),
        Ok(Some((value, size_len, unknown))) => Ok(Some(Head {
            id,
            id_len,
            size: (!unknown).then_some(value),
            len: id_len + size_len,
        })),
    }
}

/// Length of a whole element that is taken in one piece: it needs a known size of at most
/// `limit` bytes (ID and size included).
fn element_len(head: Head, limit: usize) -> Result<usize, FormatError> {
    let size = head.size.ok_or(FormatError::Ebml(
        "unknown size on an element other than a Segment or a Cluster",
    ))?;
    usize::try_from(size)
        .ok()
        .and_then(|s| s.checked_add(head.len))
        .filter(|&len| len <= limit)
        .ok_or(FormatError::ElementTooLarge {
            size: size.saturating_add(head.len as u64),
            limit,
        })
}

/// The children of a master element's body. Parsing stops (quietly) at anything malformed,
/// of unknown size or cut short: this is only used to learn things from bodies that are
/// relayed as they are anyway.
pub(crate) struct Children<'a>(pub(crate) &'a [u8]);

impl<'a> Iterator for Children<'a> {
    type Item = (u32, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let head = read_head(self.0).ok()??;
        let size = usize::try_from(head.size?).ok()?;
        let end = head.len.checked_add(size)?;
        let body = self.0.get(head.len..end)?;
        self.0 = &self.0[end..];
        Some((head.id, body))
    }
}

/// An unsigned integer element's value.
pub(crate) fn uint(body: &[u8]) -> Option<u64> {
    (body.len() <= 8).then(|| body.iter().fold(0u64, |v, &b| v << 8 | u64::from(b)))
}

fn codec_for(codec_id: &[u8]) -> Codec {
    // A string element may be padded with NULs.
    let name = codec_id.split(|&b| b == 0).next().unwrap_or_default();
    match name {
        b"V_VP8" => Codec::Vp8,
        b"V_VP9" => Codec::Vp9,
        b"V_AV1" => Codec::Av1,
        b"V_MPEG4/ISO/AVC" => Codec::H264,
        b"V_THEORA" => Codec::Theora,
        b"A_OPUS" => Codec::Opus,
        b"A_VORBIS" => Codec::Vorbis,
        b"A_FLAC" => Codec::Flac,
        b"A_MPEG/L3" => Codec::Mp3,
        // Old files spell the profile out: A_AAC/MPEG4/LC and the like.
        n if n.starts_with(b"A_AAC") => Codec::Aac,
        _ => Codec::Unknown,
    }
}

/// What the Tracks element of one set of headers says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Tracks {
    info: StreamInfo,
    /// Track number of the first video track: its blocks decide sync points.
    video: Option<u64>,
}

fn parse_tracks(body: &[u8]) -> Tracks {
    let mut tracks = Tracks::default();
    for (id, entry) in Children(body) {
        if id != TRACK_ENTRY {
            continue;
        }
        let (mut number, mut kind, mut codec, mut size) = (None, None, Codec::Unknown, None);
        for (id, value) in Children(entry) {
            match id {
                TRACK_NUMBER => number = uint(value),
                TRACK_TYPE => kind = uint(value),
                CODEC_ID => codec = codec_for(value),
                VIDEO => {
                    let (mut w, mut h) = (None, None);
                    for (id, value) in Children(value) {
                        let v = uint(value).and_then(|v| u32::try_from(v).ok());
                        match id {
                            PIXEL_WIDTH => w = v,
                            PIXEL_HEIGHT => h = v,
                            _ => {}
                        }
                    }
                    size = w.zip(h);
                }
                _ => {}
            }
        }
        let video = match kind {
            Some(TRACK_TYPE_VIDEO) => true,
            Some(TRACK_TYPE_AUDIO) => false,
            // Subtitles, buttons, metadata tracks: not a codec a listener plays.
            Some(_) => continue,
            None => codec.is_video(),
        };
        tracks.info.codecs.push(codec);
        if video && tracks.video.is_none() && number.is_some() {
            tracks.video = number;
            tracks.info.video_size = size;
        }
    }
    tracks
}

/// The track number at the start of a (Simple)Block body and its length.
fn block_track(body: &[u8]) -> Option<(u64, usize)> {
    match vint(body) {
        Ok(Some((track, len, _))) => Some((track, len)),
        _ => None,
    }
}

/// For a block of track `video`: whether it is a keyframe. `None` for any other element.
fn video_keyframe(id: u32, body: &[u8], video: u64) -> Option<bool> {
    match id {
        SIMPLE_BLOCK => {
            // Track number, 16-bit relative timecode, flags.
            let (track, len) = block_track(body)?;
            if track != video {
                return None;
            }
            Some(body.get(len + 2)? & 0x80 != 0)
        }
        BLOCK_GROUP => {
            // A Block has no keyframe flag: a block that references no other is a keyframe.
            let mut track = None;
            let mut references = false;
            for (id, value) in Children(body) {
                match id {
                    BLOCK => track = block_track(value).map(|(t, _)| t),
                    REFERENCE_BLOCK => references = true,
                    _ => {}
                }
            }
            (track? == video).then_some(!references)
        }
        _ => None,
    }
}

/// Where the framer is in the element tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Looking for the EBML magic: at the start, bytes before it are garbage.
    Seek,
    /// Capturing headers into `buf[..held]`; `in_segment` once the Segment head is in.
    Headers { in_segment: bool },
    /// Between Segment children after the headers: Clusters, Cues, Tags...
    Segment,
    /// Inside a Cluster. `left`: body bytes not yet taken, `None` for an unknown size.
    /// `prefix`: `buf[..held]` is the Cluster's start, held until its first video block.
    Cluster { left: Option<u64>, prefix: bool },
}

/// What one parsing step did.
enum Step {
    /// State changed; parse on.
    Again,
    /// More input is needed.
    Need,
    Out(Event),
}

/// Frames a WebM/Matroska byte stream: see the module documentation.
#[derive(Debug)]
pub struct WebmFramer {
    buf: BytesMut,
    phase: Phase,
    /// Bytes at the front of `buf` parsed and held back: headers being captured, or a Cluster
    /// prefix waiting for its first video block.
    held: usize,
    /// Garbage dropped before an EBML header, reported when the header is found.
    skipped: usize,
    /// Tracks of the headers last emitted: what [`Framer::info`] reports.
    tracks: Tracks,
    /// Tracks of the headers being captured.
    pending: Tracks,
    /// A fatal error, repeated on every poll.
    failed: Option<FormatError>,
    /// Largest element taken whole, in bytes (ID and size included).
    max_element: usize,
}

impl Default for WebmFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl WebmFramer {
    /// A framer at the start of a WebM stream, taking elements of up to [`MAX_ELEMENT`] bytes.
    pub fn new() -> Self {
        Self::with_max_element(MAX_ELEMENT as usize)
    }

    /// A framer at the start of a WebM stream that refuses any element after the headers
    /// larger than `bytes` (ID and size included) with [`FormatError::ElementTooLarge`].
    pub fn with_max_element(bytes: usize) -> Self {
        WebmFramer {
            buf: BytesMut::new(),
            phase: Phase::Seek,
            held: 0,
            skipped: 0,
            tracks: Tracks::default(),
            pending: Tracks::default(),
            failed: None,
            max_element: bytes,
        }
    }

    /// The element ending at `end` in the buffer is incomplete: a large one gets a buffer of
    /// its size now, plus [`EXACT_FROM`] for the rest of the push that completes it (a server
    /// reads less than that at a time), with one copy of what is held so far. So the buffer
    /// does not double its way there, and the chunk it becomes pins no more than it needs.
    fn room_for(&mut self, end: usize) {
        if end > EXACT_FROM && self.buf.capacity() < end {
            let mut exact = BytesMut::with_capacity(end + EXACT_FROM);
            exact.extend_from_slice(&self.buf);
            self.buf = exact;
        }
    }

    fn take(&mut self, n: usize) -> Bytes {
        self.held = 0;
        self.buf.split_to(n).freeze()
    }

    fn chunk(&mut self, n: usize, sync: bool) -> Event {
        Event::Chunk(Chunk {
            bytes: self.take(n),
            sync,
        })
    }

    fn start_capture(&mut self) {
        self.phase = Phase::Headers { in_segment: false };
        self.held = 0;
        self.pending = Tracks::default();
    }

    fn step(&mut self) -> Result<Step, FormatError> {
        match self.phase {
            Phase::Seek => self.seek(),
            Phase::Headers { in_segment } => self.capture(in_segment),
            Phase::Segment => self.segment(),
            Phase::Cluster { left, prefix } => self.cluster(left, prefix),
        }
    }

    fn seek(&mut self) -> Result<Step, FormatError> {
        // The first position holding the magic, or a tail of the buffer that may begin it.
        let at = (0..self.buf.len())
            .find(|&i| {
                let rest = &self.buf[i..];
                let n = rest.len().min(EBML_MAGIC.len());
                rest[..n] == EBML_MAGIC[..n]
            })
            .unwrap_or(self.buf.len());
        self.buf.advance(at);
        self.skipped += at;
        if !self.buf.starts_with(&EBML_MAGIC) {
            return Ok(Step::Need);
        }
        self.start_capture();
        match std::mem::take(&mut self.skipped) {
            0 => Ok(Step::Again),
            skipped => Err(FormatError::Garbage {
                skipped,
                what: "EBML header",
            }),
        }
    }

    fn capture(&mut self, in_segment: bool) -> Result<Step, FormatError> {
        let Some(head) = read_head(&self.buf[self.held..])? else {
            return Ok(Step::Need);
        };
        match head.id {
            EBML if self.held > 0 => {
                // The source restarted before its first Cluster: what was captured describes
                // no data that will ever be sent, so it is dropped, not emitted.
                self.buf.advance(self.held);
                self.start_capture();
                Ok(Step::Again)
            }
            SEGMENT if in_segment => Err(FormatError::Ebml("a second Segment in the headers")),
            SEGMENT => {
                // Only the head: the Segment's children follow.
                if self.held + head.len > HEADERS_LIMIT {
                    return Err(FormatError::HeadersTooLarge {
                        limit: HEADERS_LIMIT,
                    });
                }
                if head.size.is_some() {
                    // A listener who joins later receives less than a known size says (see the
                    // module doc). Unknown, of the same length, fits every listener and moves
                    // no byte.
                    let size_field = &mut self.buf[self.held + head.id_len..self.held + head.len];
                    size_field.fill(0xFF);
                    size_field[0] = 0xFF >> (size_field.len() - 1);
                }
                self.held += head.len;
                self.phase = Phase::Headers { in_segment: true };
                Ok(Step::Again)
            }
            CLUSTER if !in_segment => Err(FormatError::Ebml("a Cluster outside a Segment")),
            CLUSTER => {
                self.tracks = std::mem::take(&mut self.pending);
                self.phase = Phase::Segment;
                Ok(Step::Out(Event::Headers(self.take(self.held))))
            }
            _ => {
                let size = head.size.ok_or(FormatError::Ebml(
                    "unknown size on an element other than a Segment or a Cluster",
                ))?;
                // Checked before buffering: a bogus size fails now, not after 1 MiB arrived.
                let end = u64::try_from(self.held + head.len)
                    .ok()
                    .and_then(|start| start.checked_add(size))
                    .filter(|&end| end <= HEADERS_LIMIT as u64)
                    .and_then(|end| usize::try_from(end).ok())
                    .ok_or(FormatError::HeadersTooLarge {
                        limit: HEADERS_LIMIT,
                    })?;
                let Some(body) = self.buf.get(self.held + head.len..end) else {
                    return Ok(Step::Need);
                };
                if head.id == TRACKS {
                    self.pending = parse_tracks(body);
                }
                self.held = end;
                Ok(Step::Again)
            }
        }
    }

    fn segment(&mut self) -> Result<Step, FormatError> {
        let Some(head) = read_head(&self.buf)? else {
            return Ok(Step::Need);
        };
        match head.id {
            CLUSTER => match self.tracks.video {
                // Audio only: any Cluster start is a place to join.
                None => {
                    self.phase = Phase::Cluster {
                        left: head.size,
                        prefix: false,
                    };
                    Ok(Step::Out(self.chunk(head.len, true)))
                }
                Some(_) => {
                    self.phase = Phase::Cluster {
                        left: head.size,
                        prefix: true,
                    };
                    self.held = head.len;
                    Ok(Step::Again)
                }
            },
            EBML => {
                self.start_capture();
                Ok(Step::Again)
            }
            SEGMENT => Err(FormatError::Ebml("a Segment without an EBML header")),
            _ => {
                let len = element_len(head, self.max_element)?;
                if self.buf.len() < len {
                    self.room_for(len);
                    return Ok(Step::Need);
                }
                Ok(Step::Out(self.chunk(len, false)))
            }
        }
    }

    fn cluster(&mut self, left: Option<u64>, prefix: bool) -> Result<Step, FormatError> {
        if left == Some(0) {
            return Ok(self.end_cluster());
        }
        if prefix && self.held >= PREFIX_LIMIT {
            self.phase = Phase::Cluster {
                left,
                prefix: false,
            };
            return Ok(Step::Out(self.chunk(self.held, false)));
        }
        let Some(head) = read_head(&self.buf[self.held..])? else {
            return Ok(Step::Need);
        };
        // A new EBML header ends any Cluster: the source restarted (in a known-size Cluster,
        // cut short). An unknown-size Cluster also ends at any Segment child.
        if head.id == EBML || (left.is_none() && head.id_len == 4) {
            return Ok(self.end_cluster());
        }
        let len = element_len(head, self.max_element)?;
        let left = match left {
            Some(left) => Some(
                left.checked_sub(len as u64)
                    .ok_or(FormatError::Ebml("element overruns its Cluster"))?,
            ),
            None => None,
        };
        let end = self.held + len;
        let Some(body) = self.buf.get(self.held + head.len..end) else {
            self.room_for(end);
            return Ok(Step::Need);
        };
        if !prefix {
            self.phase = Phase::Cluster { left, prefix };
            return Ok(Step::Out(self.chunk(len, false)));
        }
        let key = self
            .tracks
            .video
            .and_then(|video| video_keyframe(head.id, body, video));
        self.held = end;
        self.phase = Phase::Cluster {
            left,
            prefix: key.is_none(),
        };
        Ok(match key {
            Some(key) => Step::Out(self.chunk(end, key)),
            None => Step::Again,
        })
    }

    /// The Cluster ended: a prefix still held (no video block in it) goes out as non-sync.
    fn end_cluster(&mut self) -> Step {
        self.phase = Phase::Segment;
        match self.held {
            0 => Step::Again,
            held => Step::Out(self.chunk(held, false)),
        }
    }
}

impl Framer for WebmFramer {
    fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    fn poll(&mut self) -> Result<Option<Event>, FormatError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            match self.step() {
                Ok(Step::Again) => {}
                Ok(Step::Need) => return Ok(None),
                Ok(Step::Out(ev)) => return Ok(Some(ev)),
                Err(e) => {
                    if e.is_fatal() {
                        self.failed = Some(e.clone());
                        self.buf = BytesMut::new();
                        self.held = 0;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Always false, even without video: a unit that starts inside a Cluster is no place to
    /// join, so the Demuxer must not merge a Cluster start into the chunk before it (which it
    /// does freely for dense-sync framers, losing the sync point).
    fn dense_sync(&self) -> bool {
        false
    }

    fn info(&self) -> StreamInfo {
        self.tracks.info.clone()
    }

    fn flush(&mut self) -> Option<Event> {
        match self.phase {
            Phase::Cluster { left, prefix: true } if self.held > 0 => {
                self.phase = Phase::Cluster {
                    left,
                    prefix: false,
                };
                Some(self.chunk(self.held, false))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTACHMENTS: u32 = 0x1941_A469;
    const CUES: u32 = 0x1C53_BB6B;
    const INFO: u32 = 0x1549_A966;
    const TIMECODE: u32 = 0xE7;

    fn id_bytes(id: u32) -> Vec<u8> {
        let b = id.to_be_bytes();
        let skip = b.iter().take_while(|&&x| x == 0).count();
        b[skip..].to_vec()
    }

    /// The shortest size VINT for `n`.
    fn size_vint(n: u64) -> Vec<u8> {
        let len = (1..=8)
            .find(|&l| n < (1u64 << (7 * l)) - 1)
            .expect("size fits");
        let v = n | 1u64 << (7 * len);
        v.to_be_bytes()[8 - len..].to_vec()
    }

    fn el(id: u32, body: &[u8]) -> Vec<u8> {
        [id_bytes(id), size_vint(body.len() as u64), body.to_vec()].concat()
    }

    fn unknown(id: u32) -> Vec<u8> {
        [
            id_bytes(id),
            vec![0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        ]
        .concat()
    }

    fn simple_block(track: u8, key: bool, len: usize) -> Vec<u8> {
        let flags = if key { 0x80 } else { 0 };
        let body = [&[0x80 | track, 0, 0, flags][..], &vec![0x55; len]].concat();
        el(SIMPLE_BLOCK, &body)
    }

    fn block_group(track: u8, references: bool) -> Vec<u8> {
        let mut body = el(BLOCK, &[0x80 | track, 0, 0, 0, 1, 2, 3]);
        if references {
            body.extend(el(REFERENCE_BLOCK, &[0xFF]));
        }
        el(BLOCK_GROUP, &body)
    }

    /// EBML header, unknown-size Segment head, Info and Tracks with `(number, type, codec)`.
    fn headers(tracks: &[(u8, u8, &str)]) -> Vec<u8> {
        let entries: Vec<u8> = tracks
            .iter()
            .flat_map(|&(n, t, codec)| {
                let mut entry = [
                    el(TRACK_NUMBER, &[n]),
                    el(TRACK_TYPE, &[t]),
                    el(CODEC_ID, codec.as_bytes()),
                ]
                .concat();
                if t == 1 {
                    let video = [el(PIXEL_WIDTH, &[0x01, 0x40]), el(PIXEL_HEIGHT, &[0xF0])];
                    entry.extend(el(VIDEO, &video.concat()));
                }
                el(TRACK_ENTRY, &entry)
            })
            .collect();
        [
            el(EBML, &el(0x4282, b"webm")),
            unknown(SEGMENT),
            el(INFO, &el(0x2AD7B1, &[0x0F, 0x42, 0x40])),
            el(TRACKS, &entries),
        ]
        .concat()
    }

    fn av_headers() -> Vec<u8> {
        headers(&[(1, 1, "V_VP8"), (2, 2, "A_OPUS")])
    }

    fn timecode() -> Vec<u8> {
        el(TIMECODE, &[0])
    }

    /// Polls until more input is needed or a fatal error.
    fn drain(f: &mut WebmFramer) -> Vec<Result<Event, FormatError>> {
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

    fn run(data: &[u8]) -> Vec<Result<Event, FormatError>> {
        let mut f = WebmFramer::new();
        f.push(data);
        drain(&mut f)
    }

    fn chunk(bytes: Vec<u8>, sync: bool) -> Result<Event, FormatError> {
        Ok(Event::Chunk(Chunk {
            bytes: bytes.into(),
            sync,
        }))
    }

    fn hdr(bytes: Vec<u8>) -> Result<Event, FormatError> {
        Ok(Event::Headers(bytes.into()))
    }

    #[test]
    fn element_heads_known_unknown_and_malformed() {
        let head = |b: &[u8]| read_head(b);
        assert_eq!(
            head(&unknown(SEGMENT)),
            Ok(Some(Head {
                id: SEGMENT,
                id_len: 4,
                size: None,
                len: 12
            }))
        );
        // Unknown sizes of every length, and the largest known 1-byte size.
        assert_eq!(
            head(&[0xEC, 0xFF]).map(|h| h.map(|h| h.size)),
            Ok(Some(None))
        );
        assert_eq!(
            head(&[0xEC, 0x7F, 0xFF]).map(|h| h.map(|h| h.size)),
            Ok(Some(None))
        );
        assert_eq!(
            head(&[0xEC, 0xFE]).map(|h| h.map(|h| h.size)),
            Ok(Some(Some(0x7E)))
        );
        assert_eq!(
            head(&[0xEC, 0x01, 0, 0, 0, 0, 0, 1, 0]).map(|h| h.map(|h| h.size)),
            Ok(Some(Some(256)))
        );
        assert_eq!(head(&[0x1F, 0x43, 0xB6]), Ok(None));
        assert_eq!(head(&[0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF]), Ok(None));
        assert_eq!(head(&[]), Ok(None));
        assert_eq!(
            head(&[0x08, 0, 0, 0, 0, 0x81]),
            Err(FormatError::Ebml("invalid element ID"))
        );
        assert_eq!(head(&[0x00]), Err(FormatError::Ebml("invalid element ID")));
        assert_eq!(
            head(&[0xEC, 0x00]),
            Err(FormatError::Ebml("invalid element size"))
        );
    }

    #[test]
    fn tracks_give_codecs_in_order_video_track_and_size() {
        let data = headers(&[
            (1, 2, "A_VORBIS"),
            (2, 1, "V_VP9"),
            (3, 0x11, "S_TEXT/WEBVTT"),
            (4, 1, "V_AV1"),
            (5, 2, "A_AAC/MPEG4/LC"),
            (6, 2, "A_WHATEVER"),
        ]);
        let mut f = WebmFramer::new();
        f.push(&data);
        f.push(&el(CLUSTER, &timecode()));
        assert!(matches!(f.poll(), Ok(Some(Event::Headers(_)))));
        let info = f.info();
        assert_eq!(
            info.codecs,
            vec![
                Codec::Vorbis,
                Codec::Vp9,
                Codec::Av1,
                Codec::Aac,
                Codec::Unknown
            ]
        );
        assert_eq!(info.video_size, Some((320, 240)));
        assert_eq!(f.tracks.video, Some(2));
    }

    #[test]
    fn a_cluster_is_sync_when_its_first_video_block_is_a_keyframe() {
        let h = av_headers();
        let c1_start = [
            timecode(),
            simple_block(2, true, 10),
            simple_block(1, true, 30),
        ]
        .concat();
        let c1_rest = [simple_block(2, true, 10), simple_block(1, false, 20)];
        let c1 = el(CLUSTER, &[c1_start.clone(), c1_rest.concat()].concat());
        let c1_head_len = c1.len() - c1_start.len() - c1_rest.concat().len();
        // Unknown-size clusters: a delta frame first, a BlockGroup keyframe, a BlockGroup
        // delta; each ends at the next Cluster, the last at Cues.
        let c2 = [unknown(CLUSTER), timecode(), simple_block(1, false, 5)].concat();
        let c3 = [unknown(CLUSTER), timecode(), block_group(1, false)].concat();
        let c4 = [
            unknown(CLUSTER),
            timecode(),
            block_group(2, false),
            block_group(1, true),
            simple_block(2, true, 3),
        ]
        .concat();
        let cues = el(CUES, &[0xBB, 0x80]);
        let data = [
            h.clone(),
            c1.clone(),
            c2.clone(),
            c3.clone(),
            c4.clone(),
            cues.clone(),
        ]
        .concat();
        let out = run(&data);
        let c4_split = c4.len() - simple_block(2, true, 3).len();
        assert_eq!(
            out,
            vec![
                hdr(h),
                chunk(c1[..c1_head_len + c1_start.len()].to_vec(), true),
                chunk(c1_rest[0].clone(), false),
                chunk(c1_rest[1].clone(), false),
                chunk(c2, false),
                chunk(c3, true),
                chunk(c4[..c4_split].to_vec(), false),
                chunk(c4[c4_split..].to_vec(), false),
                chunk(cues, false),
            ]
        );
    }

    #[test]
    fn without_video_every_cluster_head_is_a_sync_chunk() {
        let h = headers(&[(1, 2, "A_OPUS")]);
        let c1 = el(CLUSTER, &[timecode(), simple_block(1, true, 9)].concat());
        let c2 = [unknown(CLUSTER), timecode(), simple_block(1, true, 9)].concat();
        let out = run(&[h.clone(), c1.clone(), c2.clone()].concat());
        assert_eq!(
            out,
            vec![
                hdr(h),
                chunk(c1[..5].to_vec(), true),
                chunk(timecode(), false),
                chunk(simple_block(1, true, 9), false),
                chunk(unknown(CLUSTER), true),
                chunk(timecode(), false),
                chunk(simple_block(1, true, 9), false),
            ]
        );
        let f = WebmFramer::new();
        assert!(!f.dense_sync());
    }

    #[test]
    fn a_cluster_prefix_without_video_is_given_up_at_the_limit() {
        let audio = simple_block(2, true, 64 * 1024);
        let n = PREFIX_LIMIT / audio.len() + 1;
        let key = simple_block(1, true, 100);
        let data = [
            av_headers(),
            unknown(CLUSTER),
            timecode(),
            audio.repeat(n + 2),
            key.clone(),
        ]
        .concat();
        let out = run(&data);
        assert_eq!(out.len(), 1 + 1 + 2 + 1, "{:?}", out.len());
        let Ok(Event::Chunk(first)) = &out[1] else {
            panic!("a chunk")
        };
        assert!(!first.sync);
        assert_eq!(first.bytes.len(), 12 + 3 + n * audio.len());
        assert!(first.bytes.len() >= PREFIX_LIMIT);
        assert_eq!(out[4], chunk(key, false));
    }

    #[test]
    fn a_cluster_ending_without_video_is_not_sync_and_flush_emits_a_held_prefix() {
        let h = av_headers();
        let c1 = el(CLUSTER, &[timecode(), simple_block(2, true, 4)].concat());
        let c2_start = [unknown(CLUSTER), timecode(), simple_block(2, true, 4)].concat();
        let mut f = WebmFramer::new();
        f.push(&[h.clone(), c1.clone(), c2_start.clone()].concat());
        assert_eq!(drain(&mut f), vec![hdr(h), chunk(c1, false)]);
        assert_eq!(f.flush(), chunk(c2_start, false).ok());
        assert_eq!(f.flush(), None);
        // The Cluster goes on, element by element.
        f.push(&simple_block(1, true, 4));
        assert_eq!(drain(&mut f), vec![chunk(simple_block(1, true, 4), false)]);
    }

    #[test]
    fn garbage_before_the_ebml_header_is_skipped_and_reported_once() {
        let h = av_headers();
        let c = el(CLUSTER, &[timecode(), simple_block(1, true, 4)].concat());
        // Parts of the magic inside the garbage, the real magic cut across pushes.
        let garbage = b"HTTP/1.0 200 OK\r\n\x1a\x45\xdf\r\n\x1a\r\n\x1a\x45".to_vec();
        let data = [garbage.clone(), h.clone(), c.clone()].concat();
        let mut f = WebmFramer::new();
        let mut out = Vec::new();
        let cut = garbage.len() + 2;
        for piece in [&data[..cut - 3], &data[cut - 3..cut], &data[cut..]] {
            f.push(piece);
            out.extend(drain(&mut f));
        }
        assert_eq!(
            out,
            vec![
                Err(FormatError::Garbage {
                    skipped: garbage.len(),
                    what: "EBML header"
                }),
                hdr(h),
                chunk(c, true),
            ]
        );
    }

    #[test]
    fn a_new_ebml_header_starts_new_headers() {
        let h1 = av_headers();
        let h2 = headers(&[(1, 2, "A_VORBIS")]);
        let key = simple_block(1, true, 4);
        // A known-size Cluster cut short by the restart, then a capture that restarts again
        // before its first Cluster (dropped), then a whole second stream.
        let cut = el(CLUSTER, &[timecode(), key.clone(), key.clone()].concat());
        let cut = &cut[..cut.len() - key.len()];
        let data = [
            h1.clone(),
            cut.to_vec(),
            headers(&[(1, 1, "V_VP9")]),
            h2.clone(),
            el(CLUSTER, &timecode()),
        ]
        .concat();
        let out = run(&data);
        assert_eq!(
            out,
            vec![
                hdr(h1),
                chunk(cut.to_vec(), true),
                hdr(h2),
                chunk(el(CLUSTER, &timecode())[..5].to_vec(), true),
                chunk(timecode(), false),
            ]
        );
    }

    #[test]
    fn a_known_segment_size_is_relayed_as_unknown_of_the_same_length() {
        for size_len in [1usize, 2, 4, 8] {
            let mut segment = id_bytes(SEGMENT);
            let mut size = vec![0u8; size_len];
            size[0] = 0x80 >> (size_len - 1);
            size[size_len - 1] |= 0x10;
            segment.extend(&size);
            let ebml = el(EBML, &el(0x4282, b"webm"));
            let tracks = el(TRACKS, &[]);
            let mut f = WebmFramer::new();
            f.push(&[ebml.clone(), segment, tracks.clone(), el(CLUSTER, &[])].concat());
            let mut unknown_size = vec![0xFF; size_len];
            unknown_size[0] = 0xFF >> (size_len - 1);
            let want = [ebml, id_bytes(SEGMENT), unknown_size, tracks].concat();
            assert_eq!(
                f.poll().transpose(),
                Some(hdr(want)),
                "{size_len}-byte size"
            );
        }
    }

    #[test]
    fn malformed_elements_are_fatal_and_the_error_sticks() {
        let h = av_headers();
        let cluster = || [h.clone(), unknown(CLUSTER), timecode()].concat();
        let huge = [id_bytes(SIMPLE_BLOCK), size_vint(MAX_ELEMENT - 1)].concat();
        let too_large = FormatError::ElementTooLarge {
            size: MAX_ELEMENT - 1 + huge.len() as u64,
            limit: MAX_ELEMENT as usize,
        };
        let cases: Vec<(Vec<u8>, FormatError)> = vec![
            ([cluster(), huge.clone()].concat(), too_large.clone()),
            (
                [cluster(), unknown(BLOCK_GROUP)].concat(),
                FormatError::Ebml("unknown size on an element other than a Segment or a Cluster"),
            ),
            (
                [cluster(), vec![0x00, 0x81]].concat(),
                FormatError::Ebml("invalid element ID"),
            ),
            (
                [h.clone(), id_bytes(CLUSTER), vec![0x82], timecode()].concat(),
                FormatError::Ebml("element overruns its Cluster"),
            ),
            (
                [el(EBML, &[]), el(CLUSTER, &[])].concat(),
                FormatError::Ebml("a Cluster outside a Segment"),
            ),
            (
                [h.clone(), unknown(SEGMENT)].concat(),
                FormatError::Ebml("a second Segment in the headers"),
            ),
            (
                [h.clone(), el(CLUSTER, &[]), unknown(SEGMENT)].concat(),
                FormatError::Ebml("a Segment without an EBML header"),
            ),
            (
                [h.clone(), el(CLUSTER, &[]), huge].concat(),
                too_large.clone(),
            ),
            (
                [h.clone(), id_bytes(ATTACHMENTS), size_vint(2 << 20)].concat(),
                FormatError::HeadersTooLarge {
                    limit: HEADERS_LIMIT,
                },
            ),
            (
                [
                    h.clone(),
                    id_bytes(ATTACHMENTS),
                    vec![0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE],
                ]
                .concat(),
                FormatError::HeadersTooLarge {
                    limit: HEADERS_LIMIT,
                },
            ),
        ];
        for (i, (data, err)) in cases.into_iter().enumerate() {
            let mut f = WebmFramer::new();
            f.push(&data);
            let out = drain(&mut f);
            assert_eq!(out.last(), Some(&Err(err.clone())), "case {i}: {out:?}");
            f.push(&av_headers());
            assert_eq!(f.poll(), Err(err), "case {i}");
            assert!(f.buf.is_empty(), "case {i}");
            assert_eq!(f.flush(), None);
        }
    }

    #[test]
    fn an_element_over_the_limit_is_refused_from_its_head() {
        // Blocks in a Cluster prefix, after it, in a BlockGroup, and an unknown element.
        let limit = 100_000;
        let big = simple_block(1, true, limit);
        let group = el(BLOCK_GROUP, &el(BLOCK, &vec![0x81; limit]));
        let other = el(0xEC, &vec![0; limit]);
        for (i, tail) in [
            big.clone(),
            [simple_block(1, true, 10), big.clone()].concat(),
            [simple_block(1, true, 10), group.clone()].concat(),
            [simple_block(1, true, 10), other.clone()].concat(),
        ]
        .into_iter()
        .enumerate()
        {
            let mut f = WebmFramer::with_max_element(limit);
            // Only the head of the large element: refused before its body comes.
            let at = tail.len() - limit + 16;
            f.push(
                &[
                    av_headers(),
                    unknown(CLUSTER),
                    timecode(),
                    tail[..at].to_vec(),
                ]
                .concat(),
            );
            let out = drain(&mut f);
            let Some(Err(FormatError::ElementTooLarge { size, limit: l })) = out.last() else {
                panic!("case {i}: {out:?}")
            };
            assert!(*size > limit as u64 && *l == limit, "case {i}: {size}");
            assert!(f.buf.capacity() < 1024, "case {i}: nothing held");
        }
        // At the limit, it goes through.
        let fits = (1..16)
            .map(|k| simple_block(1, true, limit - k))
            .find(|b| b.len() == limit)
            .expect("a block of the limit's size");
        let mut f = WebmFramer::with_max_element(limit);
        f.push(&[av_headers(), unknown(CLUSTER), timecode(), fits].concat());
        assert!(drain(&mut f).iter().all(Result::is_ok));
    }

    #[test]
    fn a_large_element_is_buffered_in_one_allocation_of_its_size() {
        let block = simple_block(1, true, 3 << 20);
        let data = [av_headers(), unknown(CLUSTER), timecode(), block.clone()].concat();
        let mut f = WebmFramer::new();
        let mut chunks = Vec::new();
        let mut first_buffer = None;
        for piece in data.chunks(16 * 1024) {
            f.push(piece);
            for ev in drain(&mut f) {
                if let Ok(Event::Chunk(c)) = ev {
                    chunks.push(c);
                }
            }
            if f.buf.len() > EXACT_FROM {
                // Once the block's head is read the buffer never moves again.
                let at = f.buf.as_ptr() as usize;
                assert_eq!(*first_buffer.get_or_insert(at), at);
                assert!(f.buf.capacity() <= block.len() + 2 * EXACT_FROM);
            }
        }
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].sync);
        assert!(chunks[0].bytes.ends_with(&block));
    }
}
