//! The oracle's answer to `GET /v1/subscribers/{peer_id}`: a subscriber's data-credit balance.
//!
//! The HTTP request itself is the caller's (the CLI's, a browser's `fetch`); this module names
//! the path and parses the body with a size limit and errors that say what was wrong.

use serde::{Deserialize, Serialize};
use wisp_protocol::SubscriberId;

/// The largest balance body accepted, bytes. The answer is four short fields (about 150
/// bytes); anything this large is not a balance.
pub const BALANCE_RESPONSE_MAX: usize = 4096;

/// A subscriber's balance at the oracle, in data credits (DC, docs/PROTOCOL.md §5.11).
///
/// Fields the oracle may add later are ignored, so an older client keeps working.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Balance {
    /// The subscriber, as its PeerId string.
    pub subscriber: SubscriberId,
    /// Credits left to spend.
    pub balance_dc: u64,
    /// Credits burned for usage paid so far.
    pub burned_dc: u64,
    /// Credits reserved for usage counted but not yet paid (the current epoch's receipts).
    pub pending_dc: u64,
}

/// Why a balance body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BalanceError {
    /// The body is larger than [`BALANCE_RESPONSE_MAX`].
    #[error("the balance answer is {len} bytes, more than the {max} a balance takes")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not the balance JSON object (the serializer's complaint, with its position).
    #[error(
        "the answer is not a balance (expected {{\"subscriber\", \"balance_dc\", \"burned_dc\", \"pending_dc\"}}): {0}"
    )]
    Json(String),
    /// The balance is another subscriber's.
    #[error("the balance is for subscriber {got}, not {expected}")]
    WrongSubscriber {
        /// The subscriber asked about.
        expected: SubscriberId,
        /// The subscriber the answer names.
        got: SubscriberId,
    },
}

/// The path of a subscriber's balance on the oracle's API.
pub fn balance_path(subscriber: &SubscriberId) -> String {
    format!("/v1/subscribers/{subscriber}")
}

/// Parses the body of `GET /v1/subscribers/{peer_id}` and checks that it is `expected`'s.
pub fn parse_balance(body: &[u8], expected: &SubscriberId) -> Result<Balance, BalanceError> {
    if body.len() > BALANCE_RESPONSE_MAX {
        return Err(BalanceError::TooLarge {
            len: body.len(),
            max: BALANCE_RESPONSE_MAX,
        });
    }
    let b: Balance = serde_json::from_slice(body).map_err(|e| BalanceError::Json(e.to_string()))?;
    if b.subscriber != *expected {
        return Err(BalanceError::WrongSubscriber {
            expected: *expected,
            got: b.subscriber,
        });
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::SubscriberKey;

    fn check(body: &str, expected: &SubscriberId) -> Result<Balance, BalanceError> {
        parse_balance(body.as_bytes(), expected)
    }

    #[test]
    fn parses_the_oracle_answer_and_refuses_others() {
        let me = SubscriberKey::from_seed(&[1; 32]).id();
        let other = SubscriberKey::from_seed(&[2; 32]).id();
        assert_eq!(
            balance_path(&me),
            format!("/v1/subscribers/{}", me.0.to_peer_id())
        );
        let ok = format!(
            r#"{{"subscriber":"{me}","balance_dc":1000,"burned_dc":20,"pending_dc":3,"later":true}}"#
        );
        assert_eq!(
            check(&ok, &me).unwrap(),
            Balance {
                subscriber: me,
                balance_dc: 1000,
                burned_dc: 20,
                pending_dc: 3
            }
        );
        assert!(matches!(
            check(&ok, &other),
            Err(BalanceError::WrongSubscriber { .. })
        ));
        for bad in [
            "",
            "not json",
            "[]",
            r#"{"subscriber":"x","balance_dc":1,"burned_dc":0,"pending_dc":0}"#,
            &format!(r#"{{"subscriber":"{me}","balance_dc":-1,"burned_dc":0,"pending_dc":0}}"#),
            &format!(r#"{{"subscriber":"{me}","balance_dc":1}}"#),
        ] {
            let e = check(bad, &me).unwrap_err();
            assert!(matches!(e, BalanceError::Json(_)), "{bad}: {e}");
            assert!(e.to_string().contains("not a balance"), "{e}");
        }
        let big = format!("{ok}{}", " ".repeat(BALANCE_RESPONSE_MAX));
        assert!(matches!(
            check(&big, &me),
            Err(BalanceError::TooLarge { .. })
        ));
    }
}
