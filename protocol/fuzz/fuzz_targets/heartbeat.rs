//! Any bytes as a `Heartbeat` payload: canonical decode, then re-encoding must give the input back.
#![no_main]

use wisp_protocol::msg::Heartbeat;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wisp_protocol_fuzz::fuzz_payload::<Heartbeat>(data, |_| {
        (wisp_protocol_fuzz::outsider(), Vec::new())
    })
});
