//! MPEG audio / ADTS framing and format sniffing on arbitrary bytes, fed in data-derived
//! pieces: no panic, every frame chunk is one valid frame, nothing is invented, and the bytes
//! relayed do not depend on how the input was cut.
//!
//! The checks live in `agora_format::fuzz_checks::mpeg`, which the test suite also runs over
//! this target's corpus (`crates/format/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_format::fuzz_checks::mpeg(data));
