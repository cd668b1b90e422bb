//! The request-head framer and parser, and the chunked-body decoder, on arbitrary bytes.
#![no_main]

use agora_server::http::{Dechunker, head_len, parse_head};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(n) = head_len(data) {
        if let Ok(req) = parse_head(&data[..n]) {
            let _ = req.path();
            let _ = req.query();
            let _ = req.keep_alive();
            let _ = req.header("authorization").map(agora_server::auth::parse_basic);
        }
        // Whatever follows the head is fed to the dechunker in two pieces.
        let rest = &data[n..];
        let cut = rest.first().map_or(0, |&b| b as usize % (rest.len() + 1));
        let mut d = Dechunker::default();
        let mut out = BytesMut::new();
        let mut input = BytesMut::from(&rest[..cut]);
        if d.decode(&mut input, &mut out).is_ok() {
            input.extend_from_slice(&rest[cut..]);
            let _ = d.decode(&mut input, &mut out);
        }
        assert!(out.len() <= rest.len());
    } else {
        let _ = parse_head(data);
    }
});
