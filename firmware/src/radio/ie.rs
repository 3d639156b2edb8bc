//! IEEE 802.11 information elements: wisp's vendor-specific element and the parser for the
//! element lists found in beacons and scan results.
//!
//! # wisp's element
//!
//! ```text
//! DD  len  02 77 69  01  payload…
//! │   │    │         │
//! │   │    │         └ OUI type: 1 = wisp beacon payload, version 1
//! │   │    └ OUI (placeholder, see WISP_OUI)
//! │   └ length of everything after it: 3 + 1 + payload length, at most 255
//! └ element ID 221, vendor specific
//! ```
//!
//! An element's length byte caps its body at 255 bytes, of which the OUI and the type take 4:
//! a beacon payload fits in one element only up to [`MAX_IE_PAYLOAD`] = **251 bytes**. The
//! encoder refuses longer payloads rather than splitting them (802.11 fragment elements are
//! not passed through by every driver and hostapd version), so the protocol's beacon encoding
//! must stay within 251 bytes.
//!
//! # Parsing
//!
//! [`elements`] walks a concatenation of elements (`NL80211_BSS_INFORMATION_ELEMENTS`,
//! `NL80211_BSS_BEACON_IES`, a hostapd `vendor_elements` value). It stops at the first element
//! whose length runs past the end of the buffer (firmware truncates long IE lists) and says so
//! through [`Elements::is_truncated`]; the complete elements before it are still returned.

/// Element ID of vendor-specific elements.
pub const VENDOR_SPECIFIC: u8 = 221;

/// wisp's OUI: a **placeholder** until an IEEE OUI (MA-S or CID) is registered.
///
/// `02` sets the locally administered bit (X bit) with the Y/Z bits in the "AAI" quadrant,
/// which the IEEE never assigns, so the value cannot collide with a registered OUI or CID.
/// Changing it is a protocol change: old and new hotspots would not hear each other.
pub const WISP_OUI: [u8; 3] = [0x02, 0x77, 0x69];

/// The OUI type byte of a wisp beacon element (version 1 of the payload framing).
pub const WISP_OUI_TYPE: u8 = 0x01;

/// The largest element body: the length byte's range.
pub const MAX_ELEMENT_BODY: usize = 255;

/// The largest beacon payload one element carries: 255 − 3 (OUI) − 1 (type) = 251 bytes.
pub const MAX_IE_PAYLOAD: usize = MAX_ELEMENT_BODY - WISP_OUI.len() - 1;

/// The largest encoded wisp element: ID, length, 255-byte body.
pub const MAX_IE_LEN: usize = 2 + MAX_ELEMENT_BODY;

/// An encoded element.
pub type ElementBuf = heapless::Vec<u8, MAX_IE_LEN>;

/// A payload too long for one element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("payload of {len} bytes exceeds the {MAX_IE_PAYLOAD}-byte vendor element limit")]
pub struct IePayloadTooLarge {
    /// The payload's length.
    pub len: usize,
}

/// Encodes `payload` as a wisp vendor-specific element.
pub fn encode_wisp_element(payload: &[u8]) -> Result<ElementBuf, IePayloadTooLarge> {
    let too_large = IePayloadTooLarge { len: payload.len() };
    if payload.len() > MAX_IE_PAYLOAD {
        return Err(too_large);
    }
    let body_len = u8::try_from(WISP_OUI.len() + 1 + payload.len()).map_err(|_| too_large)?;
    let mut out = ElementBuf::new();
    // Capacity is MAX_IE_LEN and the payload was checked above, so none of these can fail.
    out.extend_from_slice(&[VENDOR_SPECIFIC, body_len])
        .and_then(|()| out.extend_from_slice(&WISP_OUI))
        .and_then(|()| out.extend_from_slice(&[WISP_OUI_TYPE]))
        .and_then(|()| out.extend_from_slice(payload))
        .map_err(|_| too_large)?;
    Ok(out)
}

/// One information element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Element<'a> {
    /// Element ID.
    pub id: u8,
    /// Body (without ID and length).
    pub data: &'a [u8],
}

impl<'a> Element<'a> {
    /// For a vendor-specific element: its OUI, OUI type and the rest.
    pub fn vendor(&self) -> Option<([u8; 3], u8, &'a [u8])> {
        if self.id != VENDOR_SPECIFIC {
            return None;
        }
        match self.data {
            [a, b, c, kind, rest @ ..] => Some(([*a, *b, *c], *kind, rest)),
            _ => None,
        }
    }

    /// The beacon payload, if this is a wisp element.
    pub fn wisp_payload(&self) -> Option<&'a [u8]> {
        match self.vendor()? {
            (WISP_OUI, WISP_OUI_TYPE, payload) => Some(payload),
            _ => None,
        }
    }
}

/// Iterator over the elements of a buffer. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    rest: &'a [u8],
    truncated: bool,
}

impl Elements<'_> {
    /// True once the iterator met an element that runs past the end of the buffer (or a
    /// lone trailing byte). Meaningful after iteration finished.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = Element<'a>;

    fn next(&mut self) -> Option<Element<'a>> {
        match self.rest {
            [] => None,
            [id, len, body @ ..] if usize::from(*len) <= body.len() => {
                let (data, rest) = body.split_at(usize::from(*len));
                self.rest = rest;
                Some(Element { id: *id, data })
            }
            _ => {
                self.truncated = true;
                self.rest = &[];
                None
            }
        }
    }
}

/// The elements of `buf`.
pub fn elements(buf: &[u8]) -> Elements<'_> {
    Elements {
        rest: buf,
        truncated: false,
    }
}

/// The payloads of all wisp elements in `buf`, in order (normally one).
pub fn wisp_payloads(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    elements(buf).filter_map(|e| e.wisp_payload())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_documented_layout() {
        let ie = encode_wisp_element(b"hi").unwrap();
        assert_eq!(ie.as_slice(), [0xDD, 6, 0x02, 0x77, 0x69, 0x01, b'h', b'i']);
        let empty = encode_wisp_element(&[]).unwrap();
        assert_eq!(empty.as_slice(), [0xDD, 4, 0x02, 0x77, 0x69, 0x01]);
    }

    #[test]
    fn payload_limit_is_251_bytes() {
        assert_eq!(MAX_IE_PAYLOAD, 251);
        let max = [0xABu8; 251];
        let ie = encode_wisp_element(&max).unwrap();
        assert_eq!(ie.len(), 257);
        assert_eq!(ie[1], 255);
        assert_eq!(wisp_payloads(&ie).next(), Some(&max[..]));
        assert_eq!(
            encode_wisp_element(&[0; 252]),
            Err(IePayloadTooLarge { len: 252 })
        );
    }

    #[test]
    fn other_vendor_elements_are_not_ours() {
        // Microsoft WMM, same shape but another OUI; ours with another type; too short.
        let buf = [
            0xDD, 0x07, 0x00, 0x50, 0xF2, 0x02, 0x00, 0x01, 0x00, //
            0xDD, 0x05, 0x02, 0x77, 0x69, 0x02, 0xFF, //
            0xDD, 0x03, 0x02, 0x77, 0x69,
        ];
        assert_eq!(wisp_payloads(&buf).count(), 0);
        let mut it = elements(&buf);
        assert_eq!(it.by_ref().count(), 3);
        assert!(!it.is_truncated());
    }

    #[test]
    fn truncated_and_malformed_lists() {
        let ours = encode_wisp_element(b"beacon").unwrap();
        let mut buf = vec![0x00, 0x04, b'w', b'i', b's', b'p'];
        buf.extend_from_slice(&ours);
        // Every prefix parses without panicking; the payload appears only once it is whole.
        for cut in 0..=buf.len() {
            let mut it = elements(&buf[..cut]);
            let found: Vec<_> = it.by_ref().filter_map(|e| e.wisp_payload()).collect();
            let complete = cut == buf.len();
            assert_eq!(found.len(), usize::from(complete), "cut at {cut}");
            assert_eq!(
                it.is_truncated(),
                cut != 0 && cut != 6 && !complete,
                "cut at {cut}"
            );
        }
        // A length byte claiming more than is left hides everything after it.
        let bad = [0x00, 0xFF, 0x01, 0x02];
        let mut it = elements(&bad);
        assert_eq!(it.next(), None);
        assert!(it.is_truncated());
    }
}
