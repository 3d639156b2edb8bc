//! Any bytes as an envelope: parse, strict verification, decode as the claimed kind.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wisp_protocol_fuzz::fuzz_envelope(data));
