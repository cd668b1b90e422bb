//! What every format test shares: the fixtures, a deterministic RNG, the ways a stream is cut
//! into pushes, and the loop that feeds those pushes to a framer or the `Demuxer`.
//!
//! Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use agora_format::mpeg::MpegFramer;
use agora_format::ogg::OggFramer;
use agora_format::webm::WebmFramer;
use agora_format::{Demuxer, Event, FormatError, Framer};

/// The crate's directory (fixtures are in `tests/fixtures`, the fuzz corpora in
/// `../../fuzz/corpus`).
pub(crate) fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A file of `tests/fixtures` (`tests/fixtures/README.md` says how each was made).
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(crate_dir()).join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// xorshift64: deterministic cuts and noise without a rand crate.
#[derive(Debug, Clone)]
pub(crate) struct XorShift(pub u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The ways a stream of `len` bytes is cut into pushes, as push sizes: whole, byte by byte,
/// and random cuts of up to 7, 300, 5000 and 64 KiB bytes.
pub(crate) fn splits(len: usize) -> Vec<(String, Vec<usize>)> {
    let mut out = vec![
        ("whole".to_string(), vec![len]),
        ("byte by byte".to_string(), vec![1; len]),
    ];
    for (seed, max) in [
        (1u64, 7usize),
        (2, 300),
        (3, 5000),
        (0x9E37_79B9, 64 * 1024),
    ] {
        let mut rng = XorShift(seed);
        let mut sizes = Vec::new();
        let mut left = len;
        while left > 0 {
            let n = (1 + rng.below(max)).min(left);
            sizes.push(n);
            left -= n;
        }
        out.push((format!("random cuts (seed {seed}, max {max})"), sizes));
    }
    out
}

/// Push sizes cutting `len` bytes into pieces of `piece` bytes (the last one shorter), as
/// `slice::chunks` does.
pub(crate) fn even(len: usize, piece: usize) -> Vec<usize> {
    (0..len)
        .step_by(piece)
        .map(|at| piece.min(len - at))
        .collect()
}

/// Something fed bytes and polled for events: a framer or the `Demuxer`.
pub(crate) trait Feed {
    fn push(&mut self, data: &[u8]);
    fn poll(&mut self) -> Result<Option<Event>, FormatError>;
}

macro_rules! feed_framer {
    ($($t:ty),*) => {$(
        impl Feed for $t {
            fn push(&mut self, data: &[u8]) {
                Framer::push(self, data);
            }
            fn poll(&mut self) -> Result<Option<Event>, FormatError> {
                Framer::poll(self)
            }
        }
    )*};
}
feed_framer!(OggFramer, WebmFramer, MpegFramer);

impl Feed for Demuxer {
    fn push(&mut self, data: &[u8]) {
        Demuxer::push(self, data);
    }
    fn poll(&mut self) -> Result<Option<Event>, FormatError> {
        Demuxer::poll(self)
    }
}

/// Pushes `data` into `f` cut as `sizes` (which add up to at most `data.len()`), polling after
/// each push until `Ok(None)` and handing every event and error to `take`. Stops at the first
/// fatal error (it sticks: polling again would return it forever). The end of the stream
/// (`flush`, `finish`) is the caller's.
pub(crate) fn feed(
    f: &mut impl Feed,
    data: &[u8],
    sizes: &[usize],
    mut take: impl FnMut(Result<Event, FormatError>),
) {
    let mut at = 0;
    for &n in sizes {
        f.push(&data[at..at + n]);
        at += n;
        loop {
            match f.poll() {
                Ok(Some(ev)) => take(Ok(ev)),
                Ok(None) => break,
                Err(e) => {
                    let fatal = e.is_fatal();
                    take(Err(e));
                    if fatal {
                        return;
                    }
                }
            }
        }
    }
}

/// Byte strings compared by length and first difference, not printed whole.
#[track_caller]
pub(crate) fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
        panic!(
            "{what}: {} bytes, expected {}, first difference at {at}",
            got.len(),
            want.len()
        );
    }
}
