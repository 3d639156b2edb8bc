//! wisp-client: the subscriber's side of proof of usage (docs/PROTOCOL.md §5.10–5.11).
//!
//! A subscriber is an ed25519 key (on a phone, a laptop, in a browser extension) with a prepaid
//! balance of data credits at the oracle. While it uses a hotspot, its client signs
//! **cumulative** usage receipts ([`UsageReceipt`](wisp_protocol::msg::UsageReceipt), kind 12)
//! for the session and sends each, signed by the subscriber only, to the hotspot on
//! [`USAGE_PROTOCOL`](wisp_protocol::msg::USAGE_PROTOCOL); the hotspot answers with a
//! [`UsageAnswer`](wisp_protocol::msg::UsageAnswer) and co-signs the receipts it agrees with.
//!
//! The library is sans-IO: it never reads a clock, opens a socket or draws random bytes. Time
//! (`now_ms`, Unix milliseconds), the session id and key seeds are inputs, so the same code
//! runs in the CLI, in tests and in a browser (it builds for `wasm32-unknown-unknown` with
//! `--no-default-features`).
//!
//! Layout:
//! - [`key`]: [`SubscriberKey`], the subscriber's signing key and its id, and the signing of
//!   one receipt.
//! - [`session`]: [`Session`], the state machine of one session with one hotspot: when to sign
//!   the next receipt, what the hotspot's answers do, and the rule that an honest client never
//!   signs more than it counted plus a tolerance ([`Policy`]).
//! - [`balance`]: [`Balance`], the oracle's answer to `GET /v1/subscribers/{peer_id}`, and its
//!   bounded parser.
//! - [`carrier`]: an offload partner's side of carrier reports (§5.12): FreeRADIUS `detail`
//!   accounting read into sessions, mapped to hotspots and signed as cumulative
//!   `carrier_report`s, with the ledger that keeps sequence numbers unique across runs.
//! - `src/main.rs` (feature `cli`, on by default): the `wisp-client` binary — `key`, `id`,
//!   `sign`, `balance`, `run` and `carrier` (`src/carrier_cli.rs`) — with the key files, the
//!   clock and the HTTP requests.
//! - [`run`] (feature `cli`): `wisp-client run`, the libp2p driver of a [`Session`]: it
//!   dials the hotspot over the agent's own network code (`wisp_agent::net`), pulls traffic
//!   through its test endpoint (`/wisp/usage-data/1`), sends each receipt from
//!   [`Session::poll_receipt`] as one request on
//!   [`USAGE_PROTOCOL`](wisp_protocol::msg::USAGE_PROTOCOL) and feeds each answer back. The
//!   library itself links no libp2p and no tokio.
#![warn(missing_docs)]

pub mod balance;
pub mod carrier;
pub mod key;
#[cfg(feature = "cli")]
pub mod run;
pub mod session;

pub use balance::{BALANCE_RESPONSE_MAX, Balance, BalanceError, balance_path, parse_balance};
pub use key::{SignError, SubscriberKey};
pub use session::{
    Agreed, AnswerError, AnswerOutcome, EndReason, Policy, SENT_MAX, Session, SessionError,
    SessionState, Status, Totals,
};
