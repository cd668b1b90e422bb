//! MPEG audio and ADTS framing (stub, being written).
use crate::detect::Sniff;
use crate::{Event, FormatError, Framer, StreamInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mp3,
    Adts,
}

#[derive(Debug)]
pub struct MpegFramer {
    kind: Kind,
}

impl MpegFramer {
    pub fn new(kind: Kind) -> Self {
        MpegFramer { kind }
    }
}

pub fn sniff(buf: &[u8]) -> Sniff {
    if buf.starts_with(b"OggS") {
        return Sniff::Found(crate::Format::Ogg);
    }
    Sniff::NeedMore
}

impl Framer for MpegFramer {
    fn push(&mut self, _data: &[u8]) {}
    fn poll(&mut self) -> Result<Option<Event>, FormatError> {
        let _ = self.kind;
        Ok(None)
    }
    fn dense_sync(&self) -> bool {
        true
    }
    fn info(&self) -> StreamInfo {
        StreamInfo::default()
    }
}
