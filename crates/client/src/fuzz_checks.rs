//! What the client's fuzz targets check, as plain functions: `fuzz/fuzz_targets/icy.rs` and
//! `response_head.rs` call them on the fuzzer's inputs and unit tests replay the committed
//! corpora (`fuzz/corpus/icy/`, `fuzz/corpus/response_head/`) through them. Not API: they
//! panic when a property does not hold.

use bytes::Bytes;

use crate::http::{ResponseHead, head_len, latin1_or_utf8};
use crate::icy::{Deinterleaver, IcyEvent, MAX_BLOCK};

/// Piece sizes cycle through values taken from `sizes`.
fn pieces<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let sizes: Vec<usize> = sizes.iter().map(|&b| 1 + usize::from(b) * 7).collect();
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .min(rest.len());
        let (piece, tail) = rest.split_at(n);
        out.push(piece);
        rest = tail;
        i += 1;
    }
    out
}

/// Audio, and each non-empty block's text (without padding) with the audio length before it.
type Output = (Vec<u8>, Vec<(usize, Vec<u8>, Option<String>)>);

fn run(metaint: Option<usize>, pieces: &[&[u8]]) -> Output {
    let mut d = Deinterleaver::new(metaint);
    let mut audio = Vec::new();
    let mut blocks = Vec::new();
    for piece in pieces {
        d.push(Bytes::copy_from_slice(piece));
        while let Some(ev) = d.poll() {
            match ev {
                IcyEvent::Audio(a) => {
                    assert!(!a.is_empty(), "an empty audio event");
                    audio.extend_from_slice(&a);
                }
                IcyEvent::Metadata(m) => {
                    assert!(!m.raw.is_empty() && m.raw.len() <= MAX_BLOCK);
                    assert_ne!(m.raw.last(), Some(&0), "padding left in");
                    blocks.push((audio.len(), m.raw.to_vec(), m.title));
                }
            }
        }
    }
    (audio, blocks)
}

/// The obvious byte-at-a-time reading of the format.
fn reference(metaint: Option<usize>, data: &[u8]) -> (Vec<u8>, Vec<(usize, Vec<u8>)>) {
    let Some(metaint) = metaint else {
        return (data.to_vec(), Vec::new());
    };
    let (mut audio, mut blocks) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < data.len() {
        let n = metaint.min(data.len() - i);
        audio.extend_from_slice(&data[i..i + n]);
        i += n;
        let Some(&l) = data.get(i) else { break };
        i += 1;
        let len = usize::from(l) * 16;
        if i + len > data.len() {
            break; // an incomplete block at the end is never handed back
        }
        let block = &data[i..i + len];
        i += len;
        let end = block.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        if end > 0 {
            blocks.push((audio.len(), block[..end].to_vec()));
        }
    }
    (audio, blocks)
}

/// The ICY de-interleaver on arbitrary bytes, fed in data-derived pieces: no panic, the
/// audio and metadata blocks match a byte-at-a-time reference, nothing depends on how the
/// input was cut, audio is never invented, and titles parse without panicking.
///
/// Input: byte 0 picks the metadata interval (0: none), bytes 1-3 the piece sizes, the rest
/// is the stream.
pub fn icy(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let metaint = Some(usize::from(data[0])).filter(|&m| m > 0);
    let stream = &data[4..];
    let whole = run(metaint, &[stream]);
    let split = run(metaint, &pieces(stream, &data[1..4]));
    assert!(whole == split, "output depends on the split");
    let (audio, blocks) = reference(metaint, stream);
    assert_eq!(whole.0, audio);
    let got: Vec<(usize, Vec<u8>)> = whole
        .1
        .iter()
        .map(|(at, raw, _)| (*at, raw.clone()))
        .collect();
    assert_eq!(got, blocks);
    assert!(whole.0.len() <= stream.len());
}

/// A response head from a server (an upstream, an authentication URL: any peer) on arbitrary
/// bytes: no panic; [`head_len`] finds the first blank line and no earlier one, whatever
/// follows it and however the bytes came (a prefix never holds a shorter head); a head it
/// delimits parses or is refused, and a parsed one's headers read as text.
pub fn response_head(data: &[u8]) {
    let Some(n) = head_len(data) else {
        // No blank line: no prefix has one either.
        for cut in [0, data.len() / 2, data.len().saturating_sub(1)] {
            assert_eq!(head_len(&data[..cut]), None);
        }
        return;
    };
    assert!(n <= data.len());
    let head = &data[..n];
    assert!(
        head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"),
        "{head:?}"
    );
    assert_eq!(head_len(head), Some(n), "the head alone");
    assert_eq!(
        head_len(&head[..n - 1]),
        None,
        "a blank line before the first"
    );
    let Ok(parsed) = ResponseHead::parse(head) else {
        return;
    };
    let mut names = 0;
    for (name, value) in parsed.headers() {
        assert_eq!(name, name.to_ascii_lowercase(), "names are lower case");
        let first = parsed.header(name).expect("a header found by its name");
        if first.as_ptr() == value.as_ptr() {
            names += 1;
        }
        let text = parsed.text(name).expect("its text");
        assert!(text.len() <= 4 * first.len());
        let _ = latin1_or_utf8(value);
    }
    assert!(names <= parsed.headers().count());
}

#[cfg(test)]
mod tests {
    /// The `icy` fuzz target's committed corpus, replayed as an ordinary test.
    #[test]
    fn fuzz_corpus_replays() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/icy");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("the icy corpus") {
            let path = entry.expect("corpus entry").path();
            super::icy(&std::fs::read(&path).expect("corpus file"));
            n += 1;
        }
        assert!(n > 0, "empty corpus in {dir}");
    }

    /// The `response_head` fuzz target's committed corpus, replayed as an ordinary test.
    #[test]
    fn response_head_corpus_replays() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/corpus/response_head"
        );
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("the response_head corpus") {
            let path = entry.expect("corpus entry").path();
            super::response_head(&std::fs::read(&path).expect("corpus file"));
            n += 1;
        }
        assert!(n > 0, "empty corpus in {dir}");
    }
}
