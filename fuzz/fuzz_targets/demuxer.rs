//! The whole `Demuxer` (sniffing, then whichever framer the bytes select) on arbitrary bytes
//! fed in data-derived pieces: no panic, polling until `Ok(None)` or a fatal error.
//!
//! The checks live in `agora_format::fuzz_checks::demuxer`, which the test suite also runs over
//! this target's corpus (`crates/format/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_format::fuzz_checks::demuxer(data));
