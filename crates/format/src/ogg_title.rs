//! In-band titles for single-stream Ogg Vorbis and Ogg Opus: a new title starts a new link of
//! the chain, the way players (VLC, mpv, ffmpeg) learn a new title from an Ogg stream.
//!
//! ```text
//!  source pages (serial S) ──► Retitler::data ──► pages as they came (until a title is set)
//!  Retitler::retitle("T")  ──► EOS page ending the current link
//!                              new header pages: serial S', comment header with TITLE=T
//!  source pages (serial S) ──► Retitler::data ──► rewritten: serial S', own sequence, new CRC
//! ```
//!
//! Sans-IO like the rest of this crate: whole pages in, whole pages out. The audio packets are
//! never touched (the setup header is the same, so every data packet decodes in the new link);
//! granule positions continue, which a link may do (it then starts at a non-zero time).
//!
//! Browsers stop on a chained Ogg stream, so this is something a mount opts into.

use bytes::{Bytes, BytesMut};

use crate::crc::ogg_page_crc;
use crate::ogg::{HEADER_LEN, PageLen, page_len};

const FLAG_CONTINUED: u8 = 0x01;
const FLAG_BOS: u8 = 0x02;
const FLAG_EOS: u8 = 0x04;

/// Why a stream's titles cannot be changed in-band.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetitleError {
    /// The stream is not a single Vorbis or Opus stream (the codecs it has).
    #[error("in-band titles need a single Vorbis or Opus stream; this one has {0}")]
    Unsupported(String),
    /// The header pages could not be rebuilt.
    #[error("malformed Ogg header pages: {0}")]
    Malformed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Vorbis,
    Opus,
}

/// One page, parsed.
struct Page<'a> {
    flags: u8,
    granule: u64,
    serial: u32,
    sequence: u32,
    lacing: &'a [u8],
    body: &'a [u8],
    len: usize,
}

/// The whole page at the start of `buf`, if there is one.
fn parse_page(buf: &[u8]) -> Option<Page<'_>> {
    let PageLen::Page(len) = page_len(buf) else {
        return None;
    };
    let head = HEADER_LEN + usize::from(buf[26]);
    let lacing = &buf[HEADER_LEN..head];
    let body = &buf[head..len];
    let word = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let mut g = [0u8; 8];
    g.copy_from_slice(&buf[6..14]);
    Some(Page {
        flags: buf[5],
        granule: u64::from_le_bytes(g),
        serial: word(14),
        sequence: word(18),
        lacing,
        body,
        len,
    })
}

/// Write one page with a fresh CRC.
fn write_page(
    out: &mut BytesMut,
    flags: u8,
    granule: u64,
    serial: u32,
    sequence: u32,
    lacing: &[u8],
    body: &[u8],
) {
    let start = out.len();
    out.extend_from_slice(b"OggS\0");
    out.extend_from_slice(&[flags]);
    out.extend_from_slice(&granule.to_le_bytes());
    out.extend_from_slice(&serial.to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&[lacing.len() as u8]);
    out.extend_from_slice(lacing);
    out.extend_from_slice(body);
    let crc = ogg_page_crc(&out[start..]);
    out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
}

/// Split header pages into their packets (one logical stream only).
fn header_packets(headers: &[u8]) -> Result<(u32, Vec<Vec<u8>>), RetitleError> {
    let mut at = 0;
    let mut serial = None;
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut open = false;
    while at < headers.len() {
        let page = parse_page(&headers[at..]).ok_or(RetitleError::Malformed("bad page"))?;
        match serial {
            None => serial = Some(page.serial),
            Some(s) if s != page.serial => {
                return Err(RetitleError::Unsupported(
                    "more than one logical stream".into(),
                ));
            }
            Some(_) => {}
        }
        let mut pos = 0;
        for (i, &l) in page.lacing.iter().enumerate() {
            let piece = &page.body[pos..pos + usize::from(l)];
            pos += usize::from(l);
            let continues = open || (i == 0 && page.flags & FLAG_CONTINUED != 0);
            match packets.last_mut() {
                Some(p) if continues => p.extend_from_slice(piece),
                _ => packets.push(piece.to_vec()),
            }
            open = l == 255;
        }
        at += page.len;
    }
    let serial = serial.ok_or(RetitleError::Malformed("no pages"))?;
    if open {
        return Err(RetitleError::Malformed("a header packet does not end"));
    }
    Ok((serial, packets))
}

/// The comment packet with every TITLE replaced by `title`.
fn retitled_comment(codec: Codec, packet: &[u8], title: &str) -> Result<Vec<u8>, RetitleError> {
    let magic: &[u8] = match codec {
        Codec::Vorbis => b"\x03vorbis",
        Codec::Opus => b"OpusTags",
    };
    let bad = RetitleError::Malformed("comment header");
    let rest = packet.strip_prefix(magic).ok_or(bad.clone())?;
    let u32_at = |b: &[u8], at: usize| -> Result<u32, RetitleError> {
        b.get(at..at + 4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .ok_or(bad.clone())
    };
    let vendor_len = u32_at(rest, 0)? as usize;
    let vendor = rest.get(4..4 + vendor_len).ok_or(bad.clone())?;
    let mut at = 4 + vendor_len;
    let count = u32_at(rest, at)?;
    at += 4;
    let mut comments: Vec<&[u8]> = Vec::new();
    for _ in 0..count {
        let len = u32_at(rest, at)? as usize;
        let c = rest.get(at + 4..at + 4 + len).ok_or(bad.clone())?;
        at += 4 + len;
        let is_title = c
            .iter()
            .position(|&b| b == b'=')
            .is_some_and(|eq| c[..eq].eq_ignore_ascii_case(b"TITLE"));
        if !is_title {
            comments.push(c);
        }
    }
    // Vorbis ends with a framing bit; Opus may carry binary data after the comments.
    let tail = &rest[at..];
    let new_title = format!("TITLE={title}");
    comments.push(new_title.as_bytes());
    let mut out = Vec::with_capacity(packet.len() + new_title.len() + 8);
    out.extend_from_slice(magic);
    out.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    out.extend_from_slice(vendor);
    out.extend_from_slice(&(comments.len() as u32).to_le_bytes());
    for c in comments {
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(tail);
    Ok(out)
}

/// Builds header pages packet by packet.
struct Pager {
    out: BytesMut,
    serial: u32,
    seq: u32,
    lacing: Vec<u8>,
    body: Vec<u8>,
    flags: u8,
    /// A packet ends on the page being built.
    ends: bool,
}

impl Pager {
    fn flush(&mut self, next_flags: u8) {
        let granule = if self.ends { 0 } else { u64::MAX };
        write_page(
            &mut self.out,
            self.flags,
            granule,
            self.serial,
            self.seq,
            &self.lacing,
            &self.body,
        );
        self.seq += 1;
        self.lacing.clear();
        self.body.clear();
        self.flags = next_flags;
        self.ends = false;
    }

    /// Append one packet, continuing onto new pages at 255 lacing values.
    fn packet(&mut self, p: &[u8]) {
        let mut from = 0;
        loop {
            if self.lacing.len() == 255 {
                self.flush(FLAG_CONTINUED);
            }
            let take = (p.len() - from).min(255);
            self.lacing.push(take as u8);
            self.body.extend_from_slice(&p[from..from + take]);
            from += take;
            // A lacing value under 255 ends the packet (a zero one after an exact multiple).
            if take < 255 {
                self.ends = true;
                return;
            }
        }
    }
}

/// Pages for header packets: the identification packet alone on a BOS page, the others
/// packed after it, granule 0 where a packet ends and -1 where none does. Returns the pages
/// and the next sequence number.
fn paginate(packets: &[Vec<u8>], serial: u32) -> (BytesMut, u32) {
    let mut pager = Pager {
        out: BytesMut::new(),
        serial,
        seq: 0,
        lacing: Vec::new(),
        body: Vec::new(),
        flags: FLAG_BOS,
        ends: false,
    };
    for (i, p) in packets.iter().enumerate() {
        pager.packet(p);
        if i == 0 || i + 1 == packets.len() {
            pager.flush(0);
        }
    }
    (pager.out, pager.seq)
}

/// The current link of the output.
#[derive(Debug)]
struct Link {
    codec: Codec,
    /// Header packets of the source's stream (identification, comment, setup).
    packets: Vec<Vec<u8>>,
    /// Serial of the source's pages.
    source_serial: u32,
    /// Serial and next sequence number written, once a title was set (`None`: pages pass as
    /// they are).
    rewrite: Option<(u32, u32)>,
    /// Last granule position and sequence number of a page that went out.
    last_granule: u64,
    last_out: (u32, u32),
}

/// Rewrites a single-stream Ogg Vorbis/Opus stream for in-band titles (see the module doc).
#[derive(Debug, Default)]
pub struct Retitler {
    link: Option<Link>,
}

impl Retitler {
    /// A rewriter waiting for the stream's headers.
    pub fn new() -> Self {
        Retitler::default()
    }

    /// The source's (new) header pages. Pages pass unchanged until the next title.
    pub fn headers(&mut self, headers: &[u8]) -> Result<(), RetitleError> {
        self.link = None;
        let (serial, packets) = header_packets(headers)?;
        let codec = match packets.first() {
            Some(p) if p.starts_with(b"\x01vorbis") && packets.len() == 3 => Codec::Vorbis,
            Some(p) if p.starts_with(b"OpusHead") && packets.len() == 2 => Codec::Opus,
            _ => {
                return Err(RetitleError::Unsupported(
                    "a codec other than Vorbis or Opus".into(),
                ));
            }
        };
        let last_seq = u32::try_from(packets.len()).unwrap_or(0);
        self.link = Some(Link {
            codec,
            packets,
            source_serial: serial,
            rewrite: None,
            last_granule: 0,
            last_out: (serial, last_seq),
        });
        Ok(())
    }

    /// Whether titles can be set (headers of a supported stream were seen).
    pub fn ready(&self) -> bool {
        self.link.is_some()
    }

    /// Pass a chunk of whole data pages: unchanged (the same `Bytes`) until a title was set,
    /// then rewritten to the current link's serial and sequence numbers.
    pub fn data(&mut self, chunk: Bytes) -> Bytes {
        let Some(link) = self.link.as_mut() else {
            return chunk;
        };
        let mut at = 0;
        let mut out = link.rewrite.map(|_| BytesMut::with_capacity(chunk.len()));
        while at < chunk.len() {
            let Some(page) = parse_page(&chunk[at..]) else {
                // Not pages (cannot happen with the framer's output): pass the rest.
                if let Some(o) = out.as_mut() {
                    o.extend_from_slice(&chunk[at..]);
                }
                break;
            };
            if page.granule != u64::MAX {
                link.last_granule = page.granule;
            }
            match (link.rewrite.as_mut(), out.as_mut()) {
                (Some((serial, next)), Some(o)) if page.serial == link.source_serial => {
                    write_page(
                        o,
                        page.flags,
                        page.granule,
                        *serial,
                        *next,
                        page.lacing,
                        page.body,
                    );
                    link.last_out = (*serial, *next);
                    *next = next.wrapping_add(1);
                }
                (_, Some(o)) => o.extend_from_slice(&chunk[at..at + page.len]),
                (_, None) => link.last_out = (page.serial, page.sequence),
            }
            at += page.len;
        }
        out.map_or(chunk, BytesMut::freeze)
    }

    /// Set a title: the page that ends the current link, and the header pages of the next
    /// one (new serial, comment header with the title). `None` before supported headers.
    pub fn retitle(&mut self, title: &str) -> Option<Result<(Bytes, Bytes), RetitleError>> {
        let link = self.link.as_mut()?;
        let comment = match retitled_comment(link.codec, &link.packets[1], title) {
            Ok(c) => c,
            Err(e) => return Some(Err(e)),
        };
        let (serial, seq) = link.last_out;
        let mut eos = BytesMut::new();
        write_page(
            &mut eos,
            FLAG_EOS,
            link.last_granule,
            serial,
            seq.wrapping_add(1),
            &[],
            &[],
        );
        // A serial unlike the previous one (and unlike the source's).
        let mut new_serial = serial.wrapping_mul(0x9E37_79B9).wrapping_add(0x7F4A_7C15);
        if new_serial == serial || new_serial == link.source_serial {
            new_serial = new_serial.wrapping_add(1);
        }
        let mut packets = link.packets.clone();
        packets[1] = comment;
        let (headers, next) = paginate(&packets, new_serial);
        link.rewrite = Some((new_serial, next));
        link.last_out = (new_serial, next.wrapping_sub(1));
        Some(Ok((eos.freeze(), headers.freeze())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vorbis_packets() -> Vec<Vec<u8>> {
        let mut id = b"\x01vorbis".to_vec();
        id.extend_from_slice(&[0; 23]);
        let mut comment = b"\x03vorbis".to_vec();
        comment.extend_from_slice(&3u32.to_le_bytes());
        comment.extend_from_slice(b"lib");
        comment.extend_from_slice(&2u32.to_le_bytes());
        for c in [&b"TITLE=old"[..], &b"ARTIST=someone"[..]] {
            comment.extend_from_slice(&(c.len() as u32).to_le_bytes());
            comment.extend_from_slice(c);
        }
        comment.push(1);
        let setup = vec![5u8; 700];
        vec![id, comment, setup]
    }

    #[test]
    fn comment_gets_the_new_title_and_keeps_the_rest() {
        let p = vorbis_packets();
        let c = retitled_comment(Codec::Vorbis, &p[1], "New talk").expect("comment");
        let text = String::from_utf8_lossy(&c);
        assert!(text.contains("ARTIST=someone") && text.contains("TITLE=New talk"));
        assert!(!text.contains("TITLE=old"));
        assert_eq!(c.last(), Some(&1), "framing bit kept");
    }

    #[test]
    fn header_pages_round_trip_and_data_is_rewritten_after_a_title() {
        let packets = vorbis_packets();
        let (headers, next) = paginate(&packets, 7);
        assert_eq!(next, 2, "id page, then comment and setup on one page");
        let (serial, back) = header_packets(&headers).expect("parse");
        assert_eq!((serial, back), (7, packets.clone()));

        let mut r = Retitler::new();
        r.headers(&headers).expect("supported");
        let mut data = BytesMut::new();
        write_page(&mut data, 0, 4096, 7, 2, &[10], &[9; 10]);
        let data = data.freeze();
        assert_eq!(r.data(data.clone()), data, "unchanged before a title");

        let (eos, new_headers) = r.retitle("T").expect("ready").expect("ok");
        let e = parse_page(&eos).expect("eos page");
        assert_eq!(
            (e.flags, e.serial, e.sequence, e.granule),
            (FLAG_EOS, 7, 3, 4096)
        );
        let (s2, p2) = header_packets(&new_headers).expect("new headers");
        assert_ne!(s2, 7);
        assert!(String::from_utf8_lossy(&p2[1]).contains("TITLE=T"));
        assert_eq!(p2[2], packets[2]);

        let out = r.data(data.clone());
        let p = parse_page(&out).expect("rewritten page");
        assert_eq!((p.serial, p.sequence, p.granule), (s2, 2, 4096));
        assert_eq!(p.body, &[9; 10]);
        assert_eq!(
            crate::crc::ogg_page_crc(&out),
            u32::from_le_bytes([out[22], out[23], out[24], out[25]])
        );
    }

    #[test]
    fn long_packets_span_pages_and_come_back_whole() {
        let mut packets = vorbis_packets();
        packets[2] = (0..255 * 300).map(|i| i as u8).collect();
        let (headers, _) = paginate(&packets, 1);
        let (_, back) = header_packets(&headers).expect("parse");
        assert_eq!(back, packets);
    }

    #[test]
    fn other_streams_are_refused() {
        let mut r = Retitler::new();
        let mut theora = BytesMut::new();
        write_page(&mut theora, FLAG_BOS, 0, 1, 0, &[7], b"\x80theora");
        assert!(r.headers(&theora).is_err());
        assert!(r.retitle("x").is_none());
        assert!(r.headers(b"junk").is_err());
    }
}
