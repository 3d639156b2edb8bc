//! Any bytes as a `RewardManifest` payload: canonical decode, then re-encoding must give the input back.
#![no_main]

use wisp_protocol::msg::RewardManifest;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wisp_protocol_fuzz::fuzz_payload::<RewardManifest>(data, |_| {
        (wisp_protocol_fuzz::outsider(), Vec::new())
    })
});
