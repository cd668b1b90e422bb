//! The live edge of a stream in its own clock: fed the demuxer's events, [`StreamClock`] says
//! the media time of the latest data that came in, read from the stream's own timestamps:
//!
//! | format | the time of a chunk |
//! |---|---|
//! | WebM | its Cluster's Timecode plus its latest block's relative timecode, times TimecodeScale (from the headers' Info, 1 ms by default) |
//! | Ogg | its latest page's granule position, per codec (the clocks of [`crate::playout`]) |
//! | MP3, ADTS | the samples of the frames received so far, over their sample rate: these streams carry no timestamp, so the clock starts at 0 with the source's first frame (a source that connects again starts again at 0, as an Ogg chain does) |
//!
//! This is the clock a slide's `at` is in (#15): an operator's "now" for a mount is
//! [`StreamClock::now`]. Sans-IO like the rest of the crate; it only reads whole units, as the
//! [`crate::Demuxer`] hands them out, and never holds bytes. An Ogg chain's granules start
//! again at 0 and so does its time: a chain is a new timeline, as it is for a player.

use std::collections::HashMap;
use std::time::Duration;

use crate::Format;
use crate::mpeg::{Kind, frame_header};
use crate::ogg::{PageLen, page_len};
use crate::playout::{Clock, TIMECODE, TIMECODE_SCALE, block_time};
use crate::webm::{self, read_head};

/// Ogg logical streams a chain may have before the clock forgets them (a stream of garbage
/// serials cannot grow the map).
const MAX_SERIALS: usize = 16;
const INFO: u32 = 0x1549_A966;

/// A stream's latest media time (see the module doc).
#[derive(Debug, Default)]
pub struct StreamClock {
    /// WebM: nanoseconds per timecode tick.
    scale: Option<u64>,
    /// WebM: the current Cluster's Timecode.
    cluster: Option<u64>,
    /// Ogg: each logical stream's clock.
    serials: HashMap<u32, Clock>,
    /// MP3, ADTS: the time of the frames before the last change of sample rate, the current
    /// rate and the samples (per channel) since it.
    mpeg: (Duration, u32, u64),
    now: Option<Duration>,
}

impl StreamClock {
    /// A clock that has seen nothing.
    pub fn new() -> StreamClock {
        StreamClock::default()
    }

    /// The media time of the latest timed data, `None` before any.
    pub fn now(&self) -> Option<Duration> {
        self.now
    }

    /// The stream's headers (`Event::Headers`): a WebM stream's TimecodeScale, an Ogg chain's
    /// codecs.
    pub fn headers(&mut self, format: Format, bytes: &[u8]) {
        match format {
            Format::WebM => {
                self.cluster = None;
                self.scale = Some(webm_scale(bytes).unwrap_or(1_000_000));
            }
            Format::Ogg => {
                self.serials.clear();
                self.ogg(bytes);
            }
            _ => {}
        }
    }

    /// A chunk of data (`Event::Chunk`'s bytes): whole units.
    pub fn chunk(&mut self, format: Format, bytes: &[u8]) {
        match format {
            Format::WebM => self.webm(bytes),
            Format::Ogg => self.ogg(bytes),
            Format::Mp3 => self.mpeg(Kind::Mp3, bytes),
            Format::Aac => self.mpeg(Kind::Adts, bytes),
            Format::Opaque => {}
        }
    }

    /// Frames add their samples; anything else (an ID3 tag, which the framer hands out as a
    /// chunk of its own) ends the walk through the chunk.
    fn mpeg(&mut self, kind: Kind, bytes: &[u8]) {
        let (base, rate, samples) = &mut self.mpeg;
        let mut at = 0;
        while let Some(h) = bytes.get(at..).and_then(|b| frame_header(kind, b)) {
            if h.frame_len == 0 {
                break;
            }
            if h.sample_rate != *rate {
                if *rate > 0 {
                    *base += samples_time(*samples, *rate);
                }
                (*rate, *samples) = (h.sample_rate, 0);
            }
            *samples += u64::from(h.samples);
            at += h.frame_len;
        }
        if *rate > 0 {
            self.now = Some(*base + samples_time(*samples, *rate));
        }
    }

    fn ogg(&mut self, mut bytes: &[u8]) {
        while let PageLen::Page(len) = page_len(bytes) {
            let page = &bytes[..len];
            let serial = u32::from_le_bytes([page[14], page[15], page[16], page[17]]);
            let granule = u64::from_le_bytes([
                page[6], page[7], page[8], page[9], page[10], page[11], page[12], page[13],
            ]);
            if page[5] & 0x02 != 0 {
                let first = page.get(27 + usize::from(page[26])..).unwrap_or_default();
                if let Some(clock) = Clock::from_bos(first) {
                    if self.serials.len() >= MAX_SERIALS {
                        self.serials.clear();
                    }
                    self.serials.insert(serial, clock);
                }
            }
            // All bits set: no packet ends on this page.
            if granule != u64::MAX
                && let Some(clock) = self.serials.get(&serial)
            {
                self.now = Some(clock.time(granule));
            }
            bytes = &bytes[len..];
        }
    }

    fn webm(&mut self, bytes: &[u8]) {
        let Some(scale) = self.scale else { return };
        let mut at = 0;
        while at < bytes.len() {
            let Ok(Some(h)) = read_head(&bytes[at..]) else {
                return;
            };
            if h.id == webm::CLUSTER {
                // Into the Cluster: its children follow its head.
                self.cluster = None;
                at += h.len;
                continue;
            }
            let Some(end) = h
                .size
                .and_then(|s| usize::try_from(s).ok())
                .and_then(|s| (at + h.len).checked_add(s))
                .filter(|&e| e <= bytes.len())
            else {
                return;
            };
            let body = &bytes[at + h.len..end];
            let rel = match h.id {
                TIMECODE => {
                    self.cluster = webm::uint(body);
                    Some(0)
                }
                webm::SIMPLE_BLOCK => block_time(body),
                webm::BLOCK_GROUP => webm::Children(body)
                    .find(|(id, _)| *id == webm::BLOCK)
                    .and_then(|(_, b)| block_time(b)),
                _ => None,
            };
            if let (Some(base), Some(rel)) = (self.cluster, rel) {
                let ticks = i128::from(base) + i128::from(rel);
                let nanos = u64::try_from(ticks.max(0)).unwrap_or(u64::MAX);
                self.now = Some(Duration::from_nanos(nanos.saturating_mul(scale)));
            }
            at = end;
        }
    }
}

/// `samples` at `rate` per second, to the nanosecond.
fn samples_time(samples: u64, rate: u32) -> Duration {
    let nanos = u128::from(samples) * 1_000_000_000 / u128::from(rate);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// TimecodeScale from a WebM stream's headers (EBML header, Segment head, its children).
fn webm_scale(bytes: &[u8]) -> Option<u64> {
    let mut at = 0;
    while at < bytes.len() {
        let h = read_head(&bytes[at..]).ok()??;
        if h.id == webm::SEGMENT || h.id == INFO {
            at += h.len;
            continue;
        }
        let end = (at + h.len).checked_add(usize::try_from(h.size?).ok()?)?;
        if h.id == TIMECODE_SCALE {
            return webm::uint(bytes.get(at + h.len..end)?).filter(|&s| s > 0);
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` MPEG-1 layer III frames of 128 kbit/s at 44.1 kHz (`0x90`: 417 bytes) or 48 kHz
    /// (`0x94`: 384 bytes), 1152 samples each.
    fn mp3_frames(n: usize, rate_byte: u8) -> Vec<u8> {
        let len = if rate_byte == 0x90 { 417 } else { 384 };
        let mut frame = vec![0u8; len];
        frame[..4].copy_from_slice(&[0xFF, 0xFB, rate_byte, 0x00]);
        frame.repeat(n)
    }

    #[test]
    fn mpeg_time_is_the_samples_received_over_their_rate() {
        let mut c = StreamClock::new();
        assert_eq!(c.now(), None);
        // An ID3 tag (a chunk of its own) says nothing.
        c.chunk(Format::Mp3, b"ID3\x04\x00\x00\x00\x00\x00\x00");
        assert_eq!(c.now(), None);
        c.chunk(Format::Mp3, &mp3_frames(10, 0x90));
        c.chunk(Format::Mp3, &mp3_frames(5, 0x90));
        let at_44k = Duration::from_nanos(15 * 1152 * 1_000_000_000 / 44_100);
        assert_eq!(c.now(), Some(at_44k));
        // A change of rate: the time so far stays, the new frames count at their rate.
        c.chunk(Format::Mp3, &mp3_frames(4, 0x94));
        assert_eq!(c.now(), Some(at_44k + Duration::from_millis(4 * 24)));
        // Not frames: nothing changes.
        c.chunk(Format::Mp3, &[0u8; 100]);
        assert_eq!(c.now(), Some(at_44k + Duration::from_millis(96)));
        // ADTS: 1024 samples a frame; 44.1 kHz AAC LC, stereo, a 200-byte frame.
        let mut adts = [0u8; 200];
        adts[..7].copy_from_slice(&[0xFF, 0xF1, 0x50, 0x80, 0x19, 0x1F, 0xFC]);
        let mut c = StreamClock::new();
        c.chunk(Format::Aac, &adts.repeat(43));
        assert_eq!(
            c.now(),
            Some(Duration::from_nanos(43 * 1024 * 1_000_000_000 / 44_100))
        );
    }

    fn el(id: &[u8], body: &[u8]) -> Vec<u8> {
        let mut v = id.to_vec();
        v.push(0x80 | body.len() as u8);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn webm_time_is_the_cluster_timecode_plus_the_block_and_the_scale() {
        let mut c = StreamClock::new();
        // Info with TimecodeScale 500,000 ns inside an unknown-size Segment.
        let info = el(
            &[0x15, 0x49, 0xA9, 0x66],
            &el(&[0x2A, 0xD7, 0xB1], &[0x07, 0xA1, 0x20]),
        );
        let mut headers = el(&[0x1A, 0x45, 0xDF, 0xA3], &[]);
        headers.extend_from_slice(&[
            0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        headers.extend_from_slice(&info);
        c.headers(Format::WebM, &headers);
        assert_eq!(c.now(), None);
        // An unknown-size Cluster head, Timecode 4000 ticks, then a block at +200.
        let mut cluster = vec![
            0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        cluster.extend_from_slice(&el(&[0xE7], &[0x0F, 0xA0]));
        c.chunk(Format::WebM, &cluster);
        assert_eq!(c.now(), Some(Duration::from_millis(2000)));
        c.chunk(
            Format::WebM,
            &el(&[0xA3], &[0x81, 0x00, 0xC8, 0x80, 1, 2, 3]),
        );
        assert_eq!(c.now(), Some(Duration::from_millis(2100)));
        // A truncated element is left alone.
        c.chunk(Format::WebM, &[0xA3, 0x90, 0x81]);
        assert_eq!(c.now(), Some(Duration::from_millis(2100)));
    }

    #[test]
    fn ogg_time_is_the_granule_in_the_codecs_clock() {
        fn page(flags: u8, granule: u64, body: &[u8]) -> Vec<u8> {
            let mut p = b"OggS\0".to_vec();
            p.push(flags);
            p.extend_from_slice(&granule.to_le_bytes());
            p.extend_from_slice(&7u32.to_le_bytes());
            p.extend_from_slice(&[0; 8]);
            p.push(1);
            p.push(body.len() as u8);
            p.extend_from_slice(body);
            p
        }
        let mut c = StreamClock::new();
        c.headers(
            Format::Ogg,
            &page(2, 0, b"OpusHead\x01\x02\0\0\x80\xbb\0\0\0\0\0"),
        );
        assert_eq!(c.now(), Some(Duration::ZERO));
        c.chunk(
            Format::Ogg,
            &[page(0, 96_000, b"x"), page(0, 144_000, b"y")].concat(),
        );
        assert_eq!(c.now(), Some(Duration::from_secs(3)));
        c.chunk(Format::Ogg, &page(0, u64::MAX, b"z"));
        assert_eq!(c.now(), Some(Duration::from_secs(3)));
    }
}
