//! The vendor-element codec on a realistic beacon element list.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use wisp_firmware::radio::ie::{
    self, MAX_IE_PAYLOAD, VENDOR_SPECIFIC, WISP_OUI, WISP_OUI_TYPE, elements, encode_wisp_element,
    wisp_payloads,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/radio/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    hex::decode(text.trim()).unwrap()
}

#[test]
fn finds_our_element_among_a_real_beacons_elements() {
    let blob = fixture("beacon_ies.hex");
    let payload = fixture("beacon_payload.hex");
    let mut it = elements(&blob);
    let ids: Vec<u8> = it.by_ref().map(|e| e.id).collect();
    assert!(!it.is_truncated());
    // SSID, rates, DS, TIM, country, ERP, RSN, ext rates, HT cap, HT op, ext cap, 4 vendor.
    assert_eq!(
        ids,
        [0, 1, 3, 5, 7, 42, 48, 50, 45, 61, 127, 221, 221, 221, 221]
    );

    let ssid = elements(&blob).find(|e| e.id == 0).map(|e| e.data);
    assert_eq!(ssid, Some(&b"wisp-hotspot-7f3a"[..]));
    let vendors: Vec<[u8; 3]> = elements(&blob)
        .filter_map(|e| e.vendor())
        .map(|v| v.0)
        .collect();
    assert_eq!(
        vendors,
        [
            [0x00, 0x50, 0xF2],
            WISP_OUI,
            [0x00, 0x50, 0xF2],
            [0x00, 0x10, 0x18]
        ]
    );

    let found: Vec<&[u8]> = wisp_payloads(&blob).collect();
    assert_eq!(found, [payload.as_slice()]);

    // Encoding the payload gives exactly the bytes on air.
    let encoded = encode_wisp_element(&payload).unwrap();
    assert!(blob.windows(encoded.len()).any(|w| w == encoded.as_slice()));
    assert_eq!(encoded[0], VENDOR_SPECIFIC);
    assert_eq!(encoded[5], WISP_OUI_TYPE);
}

#[test]
fn truncated_scan_results_never_yield_a_partial_payload() {
    let blob = fixture("beacon_ies.hex");
    let payload = fixture("beacon_payload.hex");
    let ours = encode_wisp_element(&payload).unwrap();
    let end_of_ours = blob
        .windows(ours.len())
        .position(|w| w == ours.as_slice())
        .unwrap()
        + ours.len();
    for cut in 0..=blob.len() {
        let found: Vec<&[u8]> = wisp_payloads(&blob[..cut]).collect();
        if cut >= end_of_ours {
            assert_eq!(found, [payload.as_slice()], "cut at {cut}");
        } else {
            assert!(found.is_empty(), "cut at {cut}: {found:?}");
        }
    }
}

#[test]
fn garbage_lists_are_survivable() {
    // Deterministic pseudo-random buffers: the parser must terminate and never panic.
    let mut x: u32 = 0x1234_5678;
    for len in 0..600 {
        let buf: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()[0]
            })
            .collect();
        let total: usize = elements(&buf).map(|e| 2 + e.data.len()).sum();
        assert!(total <= buf.len());
        for payload in wisp_payloads(&buf) {
            assert!(payload.len() <= MAX_IE_PAYLOAD);
        }
    }
    assert_eq!(ie::MAX_IE_LEN, 257);
}
