//! ICY metadata, sans-IO: a listener that asked for `Icy-MetaData: 1` gets, every
//! `icy-metaint` bytes of audio, one length byte `L` and `L × 16` bytes of NUL-padded text
//! such as `StreamTitle='Artist - Title';StreamUrl='…';` (`L = 0`: nothing changed).
//!
//! ```text
//!   Bytes (any cuts) ─► Deinterleaver::push ─► poll ─► IcyEvent::Audio(Bytes)     (slices of
//!                                                    └► IcyEvent::Metadata(..)      the input)
//! ```
//!
//! **Bounded:** the de-interleaver holds the input it was given and not yet handed back, and
//! at most one metadata block ([`MAX_BLOCK`] bytes). Audio is never copied: each audio event
//! is a slice of a pushed [`Bytes`]. The events do not depend on how the input was cut
//! (adjacent audio events concatenated; tested at every cut and fuzzed).

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::http::latin1_or_utf8;

/// The largest metadata block: 255 × 16 bytes of text.
pub const MAX_BLOCK: usize = 255 * 16;

/// What the de-interleaver hands back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IcyEvent {
    /// Stream bytes, in order, with the metadata taken out.
    Audio(Bytes),
    /// A non-empty metadata block.
    Metadata(IcyMetadata),
}

/// One metadata block, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcyMetadata {
    /// `StreamTitle`, when the block has one (`Some("")`: the title was cleared).
    pub title: Option<String>,
    /// `StreamUrl`, when the block has one.
    pub url: Option<String>,
    /// The block's text without its NUL padding.
    pub raw: Bytes,
}

impl IcyMetadata {
    /// Parses a block's text (`raw` without padding). Values are UTF-8, or else Latin-1
    /// (Icecast's default for MP3 mounts). Tolerant: a quote inside a value ends it only when
    /// `;` and the end of the block or another `Key='` follow; an unterminated value runs to
    /// the end.
    pub(crate) fn parse(raw: Bytes) -> IcyMetadata {
        let text = latin1_or_utf8(&raw);
        let (mut title, mut url) = (None, None);
        for (key, value) in fields(&text) {
            if key.eq_ignore_ascii_case("StreamTitle") && title.is_none() {
                title = Some(value.to_string());
            } else if key.eq_ignore_ascii_case("StreamUrl") && url.is_none() {
                url = Some(value.to_string());
            }
        }
        IcyMetadata { title, url, raw }
    }
}

/// The `Key='value';` fields of a metadata block's text.
fn fields(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ';' || c.is_whitespace());
        let Some((key, after)) = rest.split_once('=') else {
            return out;
        };
        let key = key.trim();
        let (value, tail) = match after.chars().next() {
            Some(q @ ('\'' | '"')) => {
                let body = &after[1..];
                let end = value_end(body, q);
                (&body[..end], body.get(end + 1..).unwrap_or(""))
            }
            _ => after.split_once(';').unwrap_or((after, "")),
        };
        out.push((key, value));
        rest = tail;
    }
}

/// Where a quoted value ends in `body` (the text after the opening quote `q`): the first
/// `q;` followed by nothing but padding or by another `Key=` and a quote; else the last `q`
/// when only padding follows it; else the end.
fn value_end(body: &str, q: char) -> usize {
    let closing = body
        .match_indices(q)
        .map(|(i, _)| i)
        .filter(|&i| body[i + 1..].starts_with(';'));
    for i in closing {
        let after = body[i + 2..].trim_start();
        if after.trim_end().is_empty() || starts_a_field(after) {
            return i;
        }
    }
    let trimmed = body.trim_end();
    match trimmed.strip_suffix(q) {
        Some(inner) => inner.len(),
        None => body.len(),
    }
}

/// `Key='` or `Key="` (a letter, then letters, digits or `_`).
fn starts_a_field(s: &str) -> bool {
    let key_len = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && (s[key_len..].starts_with("='") || s[key_len..].starts_with("=\""))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Audio bytes until the next metadata block.
    Audio { left: usize },
    /// The next byte is a block's length.
    Length,
    /// Inside a block.
    Meta { left: usize },
}

/// Takes ICY metadata out of a stream: fed [`Bytes`] in any cuts with
/// [`push`](Deinterleaver::push), it hands back [`IcyEvent`]s from
/// [`poll`](Deinterleaver::poll) until `None` (the explicit "need more input").
#[derive(Debug)]
pub struct Deinterleaver {
    /// `None`: no metadata, every byte is audio.
    metaint: Option<usize>,
    state: State,
    /// The block being read (at most [`MAX_BLOCK`] bytes).
    block: BytesMut,
    input: VecDeque<Bytes>,
}

impl Deinterleaver {
    /// A de-interleaver for a stream with metadata every `metaint` audio bytes (the
    /// response's `icy-metaint`); `None` or `Some(0)`: the stream has none.
    pub fn new(metaint: Option<usize>) -> Self {
        let metaint = metaint.filter(|&m| m > 0);
        Deinterleaver {
            metaint,
            state: State::Audio {
                left: metaint.unwrap_or(usize::MAX),
            },
            block: BytesMut::new(),
            input: VecDeque::new(),
        }
    }

    /// Adds stream bytes.
    pub fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.input.push_back(bytes);
        }
    }

    /// The next event, or `None` when all input has been used.
    pub fn poll(&mut self) -> Option<IcyEvent> {
        loop {
            let front = self.input.front_mut()?;
            if front.is_empty() {
                self.input.pop_front();
                continue;
            }
            match self.state {
                State::Audio { left } => {
                    if self.metaint.is_none() {
                        return self.input.pop_front().map(IcyEvent::Audio);
                    }
                    let n = left.min(front.len());
                    let audio = front.split_to(n);
                    self.state = if n == left {
                        State::Length
                    } else {
                        State::Audio { left: left - n }
                    };
                    return Some(IcyEvent::Audio(audio));
                }
                State::Length => {
                    let len = usize::from(front[0]) * 16;
                    front.advance(1);
                    self.state = if len == 0 {
                        self.next_audio()
                    } else {
                        self.block.clear();
                        self.block.reserve(len);
                        State::Meta { left: len }
                    };
                }
                State::Meta { left } => {
                    let n = left.min(front.len());
                    self.block.extend_from_slice(&front[..n]);
                    front.advance(n);
                    if n < left {
                        self.state = State::Meta { left: left - n };
                        continue;
                    }
                    self.state = self.next_audio();
                    let text_len = self
                        .block
                        .iter()
                        .rposition(|&b| b != 0)
                        .map_or(0, |p| p + 1);
                    let raw = self.block.split().freeze().slice(..text_len);
                    if !raw.is_empty() {
                        return Some(IcyEvent::Metadata(IcyMetadata::parse(raw)));
                    }
                }
            }
        }
    }

    fn next_audio(&self) -> State {
        State::Audio {
            left: self.metaint.unwrap_or(usize::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn title(raw: &str) -> Option<String> {
        IcyMetadata::parse(Bytes::copy_from_slice(raw.as_bytes())).title
    }

    #[test]
    fn titles_parse_tolerantly() {
        assert_eq!(title("StreamTitle='A - B';").as_deref(), Some("A - B"));
        assert_eq!(title("StreamTitle='';").as_deref(), Some(""));
        assert_eq!(
            title("StreamTitle='It's a 'quoted' title';StreamUrl='http://x/';").as_deref(),
            Some("It's a 'quoted' title")
        );
        assert_eq!(
            title("StreamTitle='Rock';n roll';").as_deref(),
            Some("Rock';n roll")
        );
        assert_eq!(title("StreamTitle='no end").as_deref(), Some("no end"));
        assert_eq!(
            title("StreamTitle='no semicolon'").as_deref(),
            Some("no semicolon")
        );
        assert_eq!(title("streamtitle=\"dq\";").as_deref(), Some("dq"));
        assert_eq!(
            title("StreamUrl='u';StreamTitle='t';").as_deref(),
            Some("t")
        );
        assert_eq!(title("StreamUrl='u';"), None);
        assert_eq!(title("garbage"), None);
        assert_eq!(title(""), None);
        let m = IcyMetadata::parse(Bytes::from_static(b"StreamTitle='Caf\xe9';StreamUrl='u';"));
        assert_eq!(m.title.as_deref(), Some("Café"));
        assert_eq!(m.url.as_deref(), Some("u"));
        assert_eq!(title("StreamTitle='Café ✓';").as_deref(), Some("Café ✓"));
    }

    /// A block as a server sends it: length byte, text, NUL padding.
    fn block(text: &[u8]) -> Vec<u8> {
        let l = text.len().div_ceil(16);
        let mut b = vec![l as u8];
        b.extend_from_slice(text);
        b.resize(1 + l * 16, 0);
        b
    }

    const METAINT: usize = 37;

    /// A stream with every kind of block, and what it should give: the audio and the blocks.
    fn fixture() -> (Vec<u8>, Vec<u8>, Vec<IcyMetadata>) {
        let long = format!("StreamTitle='{}';", "x".repeat(MAX_BLOCK - 15));
        assert_eq!(long.len(), MAX_BLOCK);
        let blocks: Vec<Vec<u8>> = vec![
            block(b"StreamTitle='';"),
            vec![0],
            block(b"StreamTitle='It's me';StreamUrl='http://a/';"),
            block(b""),
            [&[1u8][..], &[0; 16]].concat(), // all padding
            block(long.as_bytes()),
            vec![0],
            block(b"StreamTitle='Caf\xe9'"),
        ];
        let mut stream = Vec::new();
        let mut audio = Vec::new();
        let mut metas = Vec::new();
        let mut n = 0u8;
        for b in &blocks {
            for _ in 0..METAINT {
                n = n.wrapping_add(7);
                stream.push(n);
                audio.push(n);
            }
            stream.extend_from_slice(b);
            let text = &b[1..];
            let end = text.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
            if end > 0 {
                metas.push(IcyMetadata::parse(Bytes::copy_from_slice(&text[..end])));
            }
        }
        // A trailing partial interval.
        stream.extend_from_slice(&[9, 8, 7]);
        audio.extend_from_slice(&[9, 8, 7]);
        (stream, audio, metas)
    }

    /// Feeds `pieces`, returns (audio, metadata in order, audio before each metadata).
    fn run(metaint: Option<usize>, pieces: &[&[u8]]) -> (Vec<u8>, Vec<(usize, IcyMetadata)>) {
        let mut d = Deinterleaver::new(metaint);
        let mut audio = Vec::new();
        let mut metas = Vec::new();
        for p in pieces {
            d.push(Bytes::copy_from_slice(p));
            while let Some(ev) = d.poll() {
                match ev {
                    IcyEvent::Audio(a) => {
                        assert!(!a.is_empty());
                        audio.extend_from_slice(&a);
                    }
                    IcyEvent::Metadata(m) => metas.push((audio.len(), m)),
                }
            }
            assert!(d.block.len() <= MAX_BLOCK);
        }
        (audio, metas)
    }

    #[test]
    fn every_split_gives_the_same_events() {
        let (stream, audio, metas) = fixture();
        let whole = run(Some(METAINT), &[&stream]);
        assert_eq!(whole.0, audio);
        assert_eq!(
            whole.1.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
            metas
        );
        let titles: Vec<Option<&str>> = metas.iter().map(|m| m.title.as_deref()).collect();
        assert_eq!(titles[0], Some(""));
        assert_eq!(titles[1], Some("It's me"));
        assert_eq!(titles[2].map(str::len), Some(MAX_BLOCK - 15));
        assert_eq!(titles[3], Some("Café"));
        assert_eq!(metas.len(), 4);
        // Metadata arrives where it was: after whole intervals of audio.
        assert!(whole.1.iter().all(|(at, _)| at % METAINT == 0));

        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(Some(METAINT), &bytes), whole, "byte by byte");
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(run(Some(METAINT), &[a, b]), whole, "cut at {cut}");
        }
        // Three pieces at pseudo-random cuts.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % (stream.len() + 1);
            let j = i + ((x >> 32) as usize) % (stream.len() + 1 - i);
            let pieces = [&stream[..i], &stream[i..j], &stream[j..]];
            assert_eq!(run(Some(METAINT), &pieces), whole, "cuts at {i}, {j}");
        }
    }

    #[test]
    fn without_metaint_everything_is_audio() {
        let (stream, _, _) = fixture();
        for metaint in [None, Some(0)] {
            let (audio, metas) = run(metaint, &[&stream[..10], &stream[10..]]);
            assert_eq!(audio, stream);
            assert!(metas.is_empty());
        }
    }

    #[test]
    fn audio_is_not_copied() {
        let input = Bytes::from(vec![1u8; 100]);
        let mut d = Deinterleaver::new(Some(60));
        d.push(input.clone());
        match d.poll() {
            Some(IcyEvent::Audio(a)) => assert_eq!(a.as_ptr(), input.as_ptr()),
            other => panic!("{other:?}"),
        }
    }
}
