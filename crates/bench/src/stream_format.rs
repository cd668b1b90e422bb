//! The stream formats the bench source pushes and its listeners find units in.

use agora_format::detect::{Sniff, sniff};
use anyhow::{Result, bail};

/// The stream formats the bench source can push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StreamFormat {
    Mp3,
    Aac,
    Ogg,
    Webm,
}

impl StreamFormat {
    /// What the source declares; icecast2 picks its format handler from it.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            StreamFormat::Mp3 => "audio/mpeg",
            StreamFormat::Aac => "audio/aac",
            StreamFormat::Ogg => "application/ogg",
            StreamFormat::Webm => "video/webm",
        }
    }

    /// The format of a file, from its first bytes (as the server decides it).
    pub(crate) fn detect(data: &[u8]) -> Result<StreamFormat> {
        let head = &data[..data.len().min(agora_format::SNIFF_LIMIT)];
        match sniff(head) {
            Sniff::Found(agora_format::Format::Mp3) => Ok(StreamFormat::Mp3),
            Sniff::Found(agora_format::Format::Aac) => Ok(StreamFormat::Aac),
            Sniff::Found(agora_format::Format::Ogg) => Ok(StreamFormat::Ogg),
            Sniff::Found(agora_format::Format::WebM) => Ok(StreamFormat::Webm),
            _ => bail!("not MP3, AAC-ADTS, Ogg or WebM (give --format)"),
        }
    }
}
