//! The Ogg comment-title reader (`agora_format::ogg::comment_title`, which turns the tags
//! source clients put in each new chain into the mount's title) on arbitrary bytes: no panic,
//! titles bounded by the input.
//!
//! The checks live in `agora_format::fuzz_checks::ogg_comments`, which the test suite also runs
//! over this target's corpus (`crates/format/tests/fuzz_corpus.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_format::fuzz_checks::ogg_comments(data));
