//! Any bytes as a `UsageReceipt` payload: canonical decode, then re-encoding must give the input back.
#![no_main]

use wisp_protocol::msg::UsageReceipt;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wisp_protocol_fuzz::fuzz_payload::<UsageReceipt>(data, |r| {
        (*r.subscriber.key(), vec![r.hotspot])
    })
});
