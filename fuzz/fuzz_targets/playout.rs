//! A `loop-file` cut for playing in a loop, on arbitrary bytes: no panic; passes ordered in
//! time, of a positive bounded length, a later pass as large as the first.
//!
//! The checks live in `agora_format::fuzz_checks::playout`, which the test suite also runs over
//! this target's corpus (`crates/format/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_format::fuzz_checks::playout(data));
