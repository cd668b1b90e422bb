//! The ICY de-interleaver on arbitrary bytes, fed in data-derived pieces: no panic, the
//! audio and metadata blocks match a byte-at-a-time reference, nothing depends on how the
//! input was cut, audio is never invented, and titles parse without panicking.
//!
//! The checks live in `agora_client::fuzz_checks::icy`, which the client's unit tests also run
//! over this target's corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_client::fuzz_checks::icy(data));
