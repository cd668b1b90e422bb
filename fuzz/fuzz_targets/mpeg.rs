//! MPEG audio / ADTS framing and format sniffing on arbitrary bytes, fed in data-derived
//! pieces: no panic, every frame chunk is one valid frame, nothing is invented, and the bytes
//! relayed do not depend on how the input was cut.
#![no_main]

use agora_format::detect::sniff;
use agora_format::mpeg::{Kind, MpegFramer, frame_header};
use agora_format::{Event, FormatError, Framer};
use libfuzzer_sys::fuzz_target;

/// Piece sizes cycle through values taken from the first bytes of the input.
fn pieces(data: &[u8]) -> Vec<&[u8]> {
    let sizes: Vec<usize> = data
        .iter()
        .take(3)
        .map(|&b| 1 + usize::from(b) * 13)
        .collect();
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

/// Bytes relayed, and bytes reported skipped.
fn run(kind: Kind, pieces: &[&[u8]]) -> (Vec<u8>, usize) {
    let mut f = MpegFramer::new(kind);
    let mut out = Vec::new();
    let mut skipped = 0;
    for piece in pieces {
        f.push(piece);
        loop {
            match f.poll() {
                Ok(Some(Event::Chunk(c))) => {
                    if c.sync {
                        let h = frame_header(kind, &c.bytes).expect("a frame chunk has a header");
                        assert_eq!(h.frame_len, c.bytes.len());
                    }
                    out.extend_from_slice(&c.bytes);
                }
                Ok(Some(Event::Headers(_))) => panic!("MPEG streams have no headers"),
                Ok(None) => break,
                Err(FormatError::Garbage { skipped: n, .. }) => skipped += n,
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    }
    assert!(f.flush().is_none());
    let _ = f.info();
    (out, skipped)
}

fuzz_target!(|data: &[u8]| {
    let cut = pieces(data);
    for piece in &cut {
        let _ = sniff(piece);
    }
    let _ = sniff(data);
    for kind in [Kind::Mp3, Kind::Adts] {
        let (whole, skipped) = run(kind, &[data]);
        assert!(whole.len() + skipped <= data.len());
        let (split, _) = run(kind, &cut);
        assert!(whole == split, "output depends on the split");
    }
});
