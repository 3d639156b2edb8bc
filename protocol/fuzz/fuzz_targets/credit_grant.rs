//! Any bytes as a `CreditGrant` payload: canonical decode, then re-encoding must give the input back.
#![no_main]

use wisp_protocol::msg::CreditGrant;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wisp_protocol_fuzz::fuzz_payload::<CreditGrant>(data, |_| {
        (wisp_protocol_fuzz::outsider(), Vec::new())
    })
});
