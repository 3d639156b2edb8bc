//! Any bytes as a `Ack` payload: canonical decode, then re-encoding must give the input back.
#![no_main]

use wisp_protocol::msg::Ack;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wisp_protocol_fuzz::fuzz_payload::<Ack>(data, |_| (wisp_protocol_fuzz::outsider(), Vec::new()))
});
