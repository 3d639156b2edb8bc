//! Any bytes as a `Witness` payload: canonical decode, then re-encoding must give the input back;
//! a witness that decodes also has its embedded beacon checked and opened.
#![no_main]

use wisp_protocol::envelope::decode_canonical;
use wisp_protocol::msg::Witness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wisp_protocol_fuzz::fuzz_payload::<Witness>(data, |_| {
        (wisp_protocol_fuzz::outsider(), Vec::new())
    });
    if let Ok(w) = decode_canonical::<Witness>(data) {
        wisp_protocol_fuzz::fuzz_witness_beacon(&w.beacon);
    }
});
