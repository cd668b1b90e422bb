//! Latency stamps: the key of each unit the bench source writes, and finders that cut what a
//! listener receives back into units and hand back their keys.
//!
//! | format | unit | key |
//! |---|---|---|
//! | Ogg | page | its CRC field |
//! | MP3, AAC-ADTS | frame | a hash of its first [`KEY_LEN`] bytes (header and coded noise) |
//! | WebM | Cluster | a hash of its first [`KEY_LEN`] bytes (head, Timecode, first block) |
//!
//! Keys are unique when the content is: generate MP3 and AAC fixtures from noise (frames of a
//! pure tone may repeat). A listener joins anywhere in the stream (icecast2 starts MP3 and AAC
//! listeners mid-frame), so every finder resyncs: Ogg on `OggS` and the page length, MP3/ADTS on
//! two frame headers one frame length apart (agora-format's [`confirmed_frame`]), then frame by
//! frame while the headers stay valid, WebM on the Cluster ID. A false match yields a key the
//! source never stamped, which is ignored. A unit's key is handed back as soon as its first
//! [`KEY_LEN`] bytes are in (an Ogg page's once the page is whole), so a listener's latency is
//! the arrival of the unit's start, not of the unit after it.
//!
//! Only the latency listeners (~50 per run) run a finder; the swarm's listeners only count.

use agora_format::mpeg::{self, Probe, confirmed_frame, frame_header};
use agora_format::ogg::{PageLen, page_len};

use crate::stream_format::StreamFormat;

/// The Matroska Cluster ID, as it appears in the stream.
pub(crate) const CLUSTER: u32 = 0x1F43_B675;

/// Bytes of a frame or Cluster that make its key.
pub(crate) const KEY_LEN: usize = 64;

/// FNV-1a over the first [`KEY_LEN`] bytes of a unit.
pub(crate) fn hash_key(unit: &[u8]) -> u64 {
    unit.iter()
        .take(KEY_LEN)
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// An Ogg page's key: its CRC field.
pub(crate) fn ogg_key(page: &[u8]) -> u64 {
    u64::from(u32::from_le_bytes([page[22], page[23], page[24], page[25]]))
}

/// Finds units in a listener's byte stream.
pub(crate) enum Finder {
    Ogg(PageSplitter),
    Frames(FrameFinder),
    Clusters(ClusterFinder),
}

impl Finder {
    pub(crate) fn new(format: StreamFormat) -> Finder {
        match format {
            StreamFormat::Ogg => Finder::Ogg(PageSplitter::default()),
            StreamFormat::Mp3 => Finder::Frames(FrameFinder::new(mpeg::Kind::Mp3)),
            StreamFormat::Aac => Finder::Frames(FrameFinder::new(mpeg::Kind::Adts)),
            StreamFormat::Webm => Finder::Clusters(ClusterFinder::default()),
        }
    }

    /// Feeds received bytes; the keys of the units whose start is now in.
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<u64> {
        match self {
            Finder::Ogg(f) => f.push(data),
            Finder::Frames(f) => f.push(data),
            Finder::Clusters(f) => f.push(data),
        }
    }
}

/// Finds Ogg page boundaries and yields each complete page's CRC field. Pages only, no checks:
/// the server relays the source's pages unchanged.
#[derive(Default)]
pub(crate) struct PageSplitter {
    buf: Vec<u8>,
}

impl PageSplitter {
    fn push(&mut self, data: &[u8]) -> Vec<u64> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let b = &self.buf[at..];
            let Some(p) = b.windows(4).position(|w| w == b"OggS") else {
                at = self.buf.len().saturating_sub(3);
                break;
            };
            let b = &b[p..];
            match page_len(b) {
                PageLen::Page(len) => {
                    out.push(ogg_key(b));
                    at += p + len;
                }
                PageLen::Incomplete { .. } => {
                    at += p;
                    break;
                }
                // `OggS` with a version the server never relays: look further.
                PageLen::NotAPage => at += p + 1,
            }
        }
        self.buf.drain(..at.min(self.buf.len()));
        out
    }
}

/// MP3 or ADTS frames: locked on a frame boundary, or looking for one.
pub(crate) struct FrameFinder {
    kind: mpeg::Kind,
    /// Starts at a frame boundary while locked.
    buf: Vec<u8>,
    locked: Option<mpeg::FrameHeader>,
    /// The key of the frame at the start of `buf` was handed back.
    keyed: bool,
}

impl FrameFinder {
    fn new(kind: mpeg::Kind) -> FrameFinder {
        FrameFinder {
            kind,
            buf: Vec::new(),
            locked: None,
            keyed: false,
        }
    }

    fn push(&mut self, data: &[u8]) -> Vec<u64> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let b = &self.buf[at..];
            let Some(prev) = self.locked else {
                // Resync: the first position where two frames line up (or may, with more bytes).
                let found = (0..b.len())
                    .filter(|&p| b[p] == 0xFF)
                    .map(|p| (p, confirmed_frame(self.kind, &b[p..])))
                    .find(|(_, probe)| !matches!(probe, Probe::No));
                match found {
                    Some((p, Probe::Yes(h))) => {
                        at += p;
                        self.locked = Some(h);
                        self.keyed = false;
                        continue;
                    }
                    Some((p, _)) => at += p,
                    None => at = self.buf.len(),
                }
                break;
            };
            if b.len() < self.kind.header_len() {
                break;
            }
            let Some(h) = frame_header(self.kind, b).filter(|h| h.same_stream(&prev)) else {
                self.locked = None;
                at += 1;
                continue;
            };
            if !self.keyed && b.len() >= h.frame_len.min(KEY_LEN) {
                out.push(hash_key(&b[..b.len().min(h.frame_len)]));
                self.keyed = true;
            }
            if b.len() < h.frame_len {
                break;
            }
            at += h.frame_len;
            self.locked = Some(h);
            self.keyed = false;
        }
        self.buf.drain(..at.min(self.buf.len()));
        out
    }
}

/// WebM Clusters, found by their ID anywhere in the stream.
#[derive(Default)]
pub(crate) struct ClusterFinder {
    buf: Vec<u8>,
}

impl ClusterFinder {
    fn push(&mut self, data: &[u8]) -> Vec<u64> {
        self.buf.extend_from_slice(data);
        let id = CLUSTER.to_be_bytes();
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let b = &self.buf[at..];
            let Some(p) = b.windows(4).position(|w| w == id) else {
                at = self.buf.len().saturating_sub(3);
                break;
            };
            if b.len() < p + KEY_LEN {
                at += p;
                break;
            }
            out.push(hash_key(&b[p..]));
            at += p + 4;
        }
        self.buf.drain(..at.min(self.buf.len()));
        out
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

    /// An MPEG-1 layer III frame, 128 kbit/s, 44.1 kHz (417 bytes), its body filled with `fill`.
    pub(crate) fn mp3_frame(fill: u8) -> Vec<u8> {
        let mut f = vec![fill; 417];
        f[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x00]);
        f
    }

    /// Every way of cutting `stream` gives the same keys.
    fn keys_in_every_split(format: StreamFormat, stream: &[u8]) -> Vec<u64> {
        let whole = Finder::new(format).push(stream);
        for piece in 1..=stream.len().min(600) {
            let mut f = Finder::new(format);
            let keys: Vec<u64> = stream.chunks(piece).flat_map(|c| f.push(c)).collect();
            assert_eq!(keys, whole, "{format:?} in pieces of {piece}");
        }
        whole
    }

    #[test]
    fn page_splitter_finds_every_page_in_every_split() {
        let stream = [
            &b"HTTP junk before the first page"[..],
            &page(7, b"one"),
            &page(8, &[0xAB; 200]),
            &page(9, b""),
        ]
        .concat();
        assert_eq!(keys_in_every_split(StreamFormat::Ogg, &stream), [7, 8, 9]);
    }

    #[test]
    fn frame_finder_resyncs_mid_frame_and_after_garbage() {
        let frames: Vec<Vec<u8>> = (1..=5).map(mp3_frame).collect();
        // Joined mid-frame (the tail of frame 1), then garbage between frames 3 and 4.
        let stream = [
            &frames[0][300..],
            &frames[1][..],
            &frames[2][..],
            &[0xFF, 0x00, 0x12][..],
            &frames[3][..],
            &frames[4][..],
        ]
        .concat();
        let key = |i: usize| hash_key(&frames[i]);
        // Frame 2 once frame 3's header confirms it, frame 3 as soon as its start is in
        // (locked), frame 4 once frame 5's header confirms it after the garbage, then frame 5.
        assert_eq!(
            keys_in_every_split(StreamFormat::Mp3, &stream),
            [key(1), key(2), key(3), key(4)]
        );
    }

    #[test]
    fn frame_finder_keys_a_frame_from_its_first_bytes_once_locked() {
        let (a, b) = (mp3_frame(1), mp3_frame(2));
        let mut f = Finder::new(StreamFormat::Mp3);
        assert_eq!(f.push(&[&a[..], &b[..4]].concat()), [hash_key(&a)]);
        assert_eq!(f.push(&b[4..KEY_LEN - 1]), Vec::<u64>::new());
        assert_eq!(f.push(&b[KEY_LEN - 1..KEY_LEN]), [hash_key(&b)]);
        assert_eq!(f.push(&b[KEY_LEN..]), Vec::<u64>::new());
    }

    #[test]
    fn cluster_finder_keys_each_cluster_start() {
        let cluster = |fill: u8| [&CLUSTER.to_be_bytes()[..], &[fill; 100]].concat();
        let stream = [&b"\x1F\x43 headers"[..], &cluster(1), &cluster(2)].concat();
        assert_eq!(
            keys_in_every_split(StreamFormat::Webm, &stream),
            [hash_key(&cluster(1)), hash_key(&cluster(2))]
        );
    }
}
