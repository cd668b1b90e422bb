//! The request-head framer and parser, and the chunked-body decoder, on arbitrary bytes (the
//! check itself lives in the server crate, where the suite also replays this corpus).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_server::fuzzing::request_head(data));
