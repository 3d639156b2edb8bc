//! Any bytes as the beacon envelope embedded in a witness: the witness check, then open_beacon.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wisp_protocol_fuzz::fuzz_witness_beacon(data));
