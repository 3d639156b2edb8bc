//! Any bytes as a `Onboard` payload: canonical decode, then re-encoding must give the input back.
#![no_main]

use wisp_protocol::msg::Onboard;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wisp_protocol_fuzz::fuzz_payload::<Onboard>(data, |_| {
        (wisp_protocol_fuzz::outsider(), Vec::new())
    })
});
