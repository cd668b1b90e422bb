//! WebM framing (stub, being written).
use crate::{Event, FormatError, Framer, StreamInfo};

#[derive(Debug, Default)]
pub struct WebmFramer {}

impl WebmFramer {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Framer for WebmFramer {
    fn push(&mut self, _data: &[u8]) {}
    fn poll(&mut self) -> Result<Option<Event>, FormatError> {
        Ok(None)
    }
    fn dense_sync(&self) -> bool {
        true
    }
    fn info(&self) -> StreamInfo {
        StreamInfo::default()
    }
}
