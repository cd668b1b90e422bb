//! Format detection from the first bytes of a stream (never from Content-Type: ffmpeg labels
//! everything `audio/mpeg` unless told otherwise).

/// A stream format Agora knows how to frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Ogg,
    WebM,
    Mp3,
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
    Found(Format),
    NeedMore,
}

/// Decide the format of a stream from its first bytes.
pub fn sniff(buf: &[u8]) -> Sniff {
    crate::mpeg::sniff(buf)
}
