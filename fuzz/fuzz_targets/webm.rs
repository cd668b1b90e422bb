//! WebM framing on arbitrary bytes, fed in data-derived pieces: no panic, polling until
//! `Ok(None)` or a fatal error; events do not depend on how the input was cut; headers start
//! with the EBML magic, sync chunks with a Cluster ID; nothing is invented.
//!
//! The checks live in `agora_format::fuzz_checks::webm`, which the test suite also runs over
//! this target's corpus (`crates/format/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_format::fuzz_checks::webm(data));
