//! Carriers' usage reports into the engine: another door than MQTT, like the operator's
//! grants, into the same rows and the same usage rules as subscribers' receipts.

use wisp_protocol::kind::Kind;
use wisp_protocol::msg::{CarrierReport, Verdict};
use wisp_protocol::{Reason, SubscriberId};

use super::{Engine, Proof, Row};
use crate::epoch::Arrival;

impl Engine {
    /// Submits an allow-listed carrier's usage report (the envelope bytes of a
    /// [`CarrierReport`], posted to the oracle's API; reports never come from MQTT, where the
    /// precheck refuses them as `unexpected_kind`), arriving at oracle time `at_ms`.
    /// `stored` is the verdict the store holds for these bytes, if any: the engine forgets the
    /// reports of closed epochs, so a resend of one is answered from the store.
    ///
    /// `Err` when the envelope does not open as a report signed by the carrier it names
    /// (`signer_mismatch`, or an envelope reason) or that carrier is not on the rules'
    /// allow-list (`usage_carrier_unknown`): nothing changed and nothing is to be stored, so
    /// keys off the list cannot grow the database. Otherwise the verdict of the usage rules
    /// ([`crate::usage::Ledger::check_carrier`]), with the row to store when the report is new
    /// (`None`: it was judged before, and the verdict is the one it got). The row is replayed
    /// after a restart like a proof's; the allow-list is not consulted again then, so a carrier
    /// taken off the list keeps what it reported before.
    ///
    /// Returns the carrier's account too, for the answer.
    pub fn submit_carrier(
        &mut self,
        envelope: Vec<u8>,
        at_ms: u64,
        stored: Option<Verdict>,
    ) -> Result<(Verdict, Option<Row>, SubscriberId), Reason> {
        let rules = self.registry.rules();
        let opened =
            CarrierReport::open_from(&envelope, |k| rules.is_carrier(k)).map_err(|e| e.reason())?;
        let account = SubscriberId(opened.msg.carrier);
        if let Some(v) = self.seen.get(&opened.id).copied().or(stored) {
            return Ok((v, None, account));
        }
        let (seq, id, node) = (self.next_seq, opened.id, opened.signer);
        let (epoch, verdict) = self.judge(&Proof::Carrier(opened), Arrival::new(seq, at_ms));
        self.next_seq += 1;
        self.remember(id, epoch, verdict);
        let row = Row {
            seq,
            id,
            node,
            kind: Kind::CarrierReport,
            epoch,
            received_ms: at_ms,
            verdict,
            envelope,
        };
        Ok((verdict, Some(row), account))
    }
}
