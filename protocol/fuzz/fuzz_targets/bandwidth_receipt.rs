//! Any bytes as a `BandwidthReceipt` payload: canonical decode, then re-encoding must give the input back.
#![no_main]

use wisp_protocol::msg::BandwidthReceipt;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wisp_protocol_fuzz::fuzz_payload::<BandwidthReceipt>(data, |r| (r.measurer, vec![r.prover]))
});
