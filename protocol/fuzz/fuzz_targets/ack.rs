//! Any bytes as a sealed ack: opening never panics; an opened ack passes its checks and is the
//! canonical tail of the input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| { wisp_protocol_fuzz::fuzz_sealed_ack(data) });
