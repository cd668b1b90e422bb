//! Ogg framing on arbitrary bytes, fed in data-derived pieces: no panic; events do not depend
//! on how the input was cut; everything relayed is whole pages found in the input, in order;
//! headers and sync chunks start with a page that begins a packet; errors are accounted for.
//!
//! The checks live in `agora_format::fuzz_checks::ogg`, which the test suite also runs over
//! this target's corpus (`crates/format/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_format::fuzz_checks::ogg(data));
