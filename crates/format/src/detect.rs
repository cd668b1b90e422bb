//! Format detection from the first bytes of a stream (never from Content-Type: ffmpeg labels
//! everything `audio/mpeg` unless told otherwise).
//!
//! Rules, in order:
//! 1. `OggS` at 0 is Ogg; the EBML magic `1A 45 DF A3` at 0 is WebM; `fLaC` at 0 is native
//!    FLAC, relayed opaque (its frame sync `FF F8` would otherwise pass for ADTS).
//! 2. An ID3v2 tag at 0 is skipped. A tag too large for two frames to follow it within
//!    [`SNIFF_LIMIT`] decides MP3 on its own: ID3v2 is an MP3 convention, and the alternative
//!    is giving up on the stream.
//! 3. Then the first position where two MPEG audio frames, or two ADTS frames, line up (a
//!    valid header, and at its computed length another valid header of the same stream, see
//!    [`mpeg::confirmed_frame`]) decides MP3 or AAC. Bytes before it are tolerated: a stream
//!    may start mid-frame.
//! 4. At least 4 KiB of plain text (an error page, a playlist) is opaque.
//!
//! Otherwise the answer is [`Sniff::NeedMore`] and the caller gives up at [`SNIFF_LIMIT`].
//!
//! [`SNIFF_LIMIT`]: crate::SNIFF_LIMIT

use crate::mpeg::{self, Kind, Probe};

/// A stream format Agora knows how to frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Ogg (Vorbis, Opus, Theora, FLAC, Speex), chained links included.
    Ogg,
    /// WebM or Matroska, live (unknown sizes).
    WebM,
    /// MPEG audio (layer III, and I/II).
    Mp3,
    /// AAC in ADTS frames.
    Aac,
    /// Unrecognised bytes, relayed as they come.
    Opaque,
}

impl Format {
    /// Listener Content-Type; `video` picks the video flavour of containers.
    pub fn content_type(self, video: bool) -> &'static str {
        match (self, video) {
            (Format::Ogg, false) => "audio/ogg",
            (Format::Ogg, true) => "video/ogg",
            (Format::WebM, false) => "audio/webm",
            (Format::WebM, true) => "video/webm",
            (Format::Mp3, _) => "audio/mpeg",
            (Format::Aac, _) => "audio/aac",
            (Format::Opaque, _) => "application/octet-stream",
        }
    }

    /// Whether ICY metadata may be interleaved into this format for listeners who ask.
    pub fn supports_icy(self) -> bool {
        matches!(self, Format::Mp3 | Format::Aac)
    }
}

/// Result of looking at a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    /// The bytes are this format.
    Found(Format),
    /// Not enough bytes to tell yet.
    NeedMore,
}

/// The EBML header element ID, the first bytes of every WebM/Matroska file.
const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

/// Text this long with no frame in it is not going to become audio.
const TEXT_PREFIX: usize = 4 * 1024;

/// Decide the format of a stream from its first bytes.
pub fn sniff(buf: &[u8]) -> Sniff {
    if buf.starts_with(b"OggS") {
        return Sniff::Found(Format::Ogg);
    }
    if buf.starts_with(&EBML_MAGIC) {
        return Sniff::Found(Format::WebM);
    }
    if buf.starts_with(b"fLaC") {
        return Sniff::Found(Format::Opaque);
    }
    let start = match mpeg::id3v2_len(buf) {
        Probe::Need => return Sniff::NeedMore,
        Probe::Yes(len) if len + 2 * Kind::Mp3.max_frame_len() > crate::SNIFF_LIMIT => {
            return Sniff::Found(Format::Mp3);
        }
        Probe::Yes(len) => len,
        Probe::No => 0,
    };
    let body = buf.get(start..).unwrap_or_default();
    if let Some(format) = first_frames(body) {
        return Sniff::Found(format);
    }
    if start == 0 && looks_like_text(buf) {
        return Sniff::Found(Format::Opaque);
    }
    Sniff::NeedMore
}

/// The format of the first two MPEG audio or ADTS frames that line up in `buf`.
fn first_frames(buf: &[u8]) -> Option<Format> {
    // A position's second byte tells the two syntaxes apart (layer 00 is ADTS), so at most
    // one of them can match there.
    buf.iter()
        .enumerate()
        .filter(|&(_, &b)| b == 0xFF)
        .find_map(|(p, _)| {
            [(Kind::Mp3, Format::Mp3), (Kind::Adts, Format::Aac)]
                .into_iter()
                .find(|&(kind, _)| matches!(mpeg::confirmed_frame(kind, &buf[p..]), Probe::Yes(_)))
                .map(|(_, format)| format)
        })
}

/// At least [`TEXT_PREFIX`] bytes of UTF-8 without control characters other than whitespace.
/// (UTF-8 never contains `0xFF`, so no frame can start in it.)
fn looks_like_text(buf: &[u8]) -> bool {
    let Some(prefix) = buf.get(..TEXT_PREFIX) else {
        return false;
    };
    let text = match std::str::from_utf8(prefix) {
        Ok(s) => s,
        // A character cut at the end of the prefix is fine.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&prefix[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two MPEG-1 layer III frames, 128 kbit/s, 44.1 kHz (417 bytes each).
    fn mp3_frames(n: usize) -> Vec<u8> {
        let mut frame = vec![0u8; 417];
        frame[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x00]);
        frame.repeat(n)
    }

    #[test]
    fn container_magic() {
        assert_eq!(sniff(b"OggS\0\x02"), Sniff::Found(Format::Ogg));
        assert_eq!(
            sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F]),
            Sniff::Found(Format::WebM)
        );
        assert_eq!(sniff(b"fLaC\0\0\0\x22"), Sniff::Found(Format::Opaque));
        assert_eq!(sniff(b"Ogg"), Sniff::NeedMore);
        assert_eq!(sniff(b""), Sniff::NeedMore);
    }

    #[test]
    fn mpeg_needs_a_second_frame() {
        let two = mp3_frames(2);
        assert_eq!(sniff(&two[..417 + 3]), Sniff::NeedMore);
        assert_eq!(sniff(&two[..417 + 4]), Sniff::Found(Format::Mp3));
        // Starting mid-frame.
        assert_eq!(sniff(&mp3_frames(3)[100..]), Sniff::Found(Format::Mp3));
    }

    #[test]
    fn id3_is_skipped_and_a_huge_tag_decides_alone() {
        let mut tagged = b"ID3\x04\x00\x00\x00\x00\x00\x05hello".to_vec();
        tagged.extend(mp3_frames(2));
        assert_eq!(sniff(&tagged[..20]), Sniff::NeedMore);
        assert_eq!(sniff(&tagged), Sniff::Found(Format::Mp3));
        assert_eq!(
            sniff(b"ID3\x04\x00\x00\x00\x02\x00\x00"),
            Sniff::Found(Format::Mp3)
        );
    }

    #[test]
    fn text_is_opaque_early() {
        let page = "<html><body>Not found</body></html>\n".repeat(200);
        assert_eq!(sniff(page.as_bytes()), Sniff::Found(Format::Opaque));
        assert_eq!(sniff(&page.as_bytes()[..1000]), Sniff::NeedMore);
    }
}
