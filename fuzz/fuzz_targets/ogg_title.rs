//! In-band Ogg titles on arbitrary bytes: the Ogg framer's output goes through a `Retitler`,
//! with titles set at data-derived points. No panic; everything it gives back is whole pages
//! with valid checksums; before the first title, data passes unchanged.
//!
//! The checks live in `agora_format::fuzz_checks::ogg_title`, which the test suite also runs over
//! this target's corpus (`crates/format/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_format::fuzz_checks::ogg_title(data));
