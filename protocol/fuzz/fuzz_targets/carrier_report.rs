//! Any bytes as a `CarrierReport` payload: canonical decode, then re-encoding must give the input back.
#![no_main]

use wisp_protocol::msg::CarrierReport;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wisp_protocol_fuzz::fuzz_payload::<CarrierReport>(data, |r| (r.carrier, Vec::new()))
});
