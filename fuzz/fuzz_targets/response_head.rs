//! A server's response head (Icecast, Icecast-KH, Shoutcast's `ICY 200 OK`, an authentication
//! URL: any peer the client crate asks) on arbitrary bytes: no panic, the head delimited at
//! its first blank line whatever follows, a delimited head parsed or refused.
//!
//! The checks live in `agora_client::fuzz_checks::response_head`, which the client's unit
//! tests also run over this target's corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| agora_client::fuzz_checks::response_head(data));
