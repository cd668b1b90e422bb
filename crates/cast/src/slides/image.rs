//! Slide images: their kinds (told by their bytes), and where one PNG ends in a stream of them
//! (ffmpeg's `image2pipe` writes them back to back).

use std::path::PathBuf;

use bytes::Bytes;

/// Largest image taken (the server's default `max-slide-bytes`); a larger one is skipped.
pub const MAX_IMAGE: usize = 8 * 1024 * 1024;

/// The image formats a server takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// PNG.
    Png,
    /// WebP (lossless, as the cast encodes them).
    Webp,
    /// JPEG (a folder's exported images).
    Jpeg,
}

impl ImageKind {
    /// The kind of an image, from its first bytes.
    pub fn sniff(b: &[u8]) -> Option<ImageKind> {
        if b.starts_with(PNG_SIGNATURE) {
            Some(ImageKind::Png)
        } else if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
            Some(ImageKind::Webp)
        } else if b.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(ImageKind::Jpeg)
        } else {
            None
        }
    }

    /// Its media type.
    pub fn content_type(self) -> &'static str {
        match self {
            ImageKind::Png => "image/png",
            ImageKind::Webp => "image/webp",
            ImageKind::Jpeg => "image/jpeg",
        }
    }

    /// Its file extension.
    pub fn extension(self) -> &'static str {
        match self {
            ImageKind::Png => "png",
            ImageKind::Webp => "webp",
            ImageKind::Jpeg => "jpg",
        }
    }
}

/// One slide, as it is archived and sent.
#[derive(Debug, Clone)]
pub struct Slide {
    /// Its place in the cast's slides, from 0.
    pub index: u64,
    /// Seconds on the stream's timeline.
    pub at: f64,
    /// Its name for the servers: the same slide sent again is recognised, never stored twice.
    pub key: String,
    /// Its format.
    pub kind: ImageKind,
    /// The image.
    pub image: Bytes,
    /// Its file in the archive, when there is one.
    pub archived: Option<PathBuf>,
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Where the PNG at the start of `buf` ends: `Ok(Some(len))` once it is whole (through its
/// `IEND` chunk), `Ok(None)` while incomplete, `Err` for bytes that are not a PNG or one over
/// `max` bytes. Allocates nothing.
pub fn png_len(buf: &[u8], max: usize) -> Result<Option<usize>, &'static str> {
    let sig = PNG_SIGNATURE.len().min(buf.len());
    if buf[..sig] != PNG_SIGNATURE[..sig] {
        return Err("not a PNG");
    }
    let mut at = PNG_SIGNATURE.len();
    loop {
        let Some(head) = buf.get(at..at + 8) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let end = at + 12 + len;
        if end > max {
            return Err("a PNG larger than the limit");
        }
        if buf.len() < end {
            return Ok(None);
        }
        if &head[4..8] == b"IEND" {
            return Ok(Some(end));
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        c.extend_from_slice(&[0; 4]);
        c
    }

    #[test]
    fn pngs_are_cut_at_their_iend_whatever_the_reads() {
        let mut png = PNG_SIGNATURE.to_vec();
        png.extend(chunk(b"IHDR", &[0; 13]));
        png.extend(chunk(b"IDAT", b"pixels"));
        png.extend(chunk(b"IEND", b""));
        let mut two = png.clone();
        two.extend_from_slice(&png);
        for cut in 0..png.len() {
            assert_eq!(png_len(&two[..cut], MAX_IMAGE), Ok(None), "cut {cut}");
        }
        assert_eq!(png_len(&two, MAX_IMAGE), Ok(Some(png.len())));
        assert_eq!(png_len(&two, 20), Err("a PNG larger than the limit"));
        assert_eq!(png_len(b"GIF89a", MAX_IMAGE), Err("not a PNG"));
        assert_eq!(ImageKind::sniff(&png), Some(ImageKind::Png));
        assert_eq!(
            ImageKind::sniff(b"RIFF\0\0\0\0WEBPVP8L"),
            Some(ImageKind::Webp)
        );
        assert_eq!(ImageKind::sniff(b"<svg"), None);
    }
}
