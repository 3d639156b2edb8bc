//! Gossip: the topics, the message validator and the gossipsub configuration with peer scoring.
//!
//! Messages are anonymous at the gossipsub layer (no libp2p signature, no sequence number):
//! every payload is already an ed25519-signed envelope, so a second signature per message
//! would only cost CPU. The message id is BLAKE3 of the bytes, so the same envelope published
//! by several nodes (a seed re-gossiped by everyone who got it over MQTT) is one message.
//!
//! Validation is explicit (`validate_messages`): gossipsub forwards nothing until the network
//! task reports a verdict, which comes from [`validate`].

use std::time::Duration;

use libp2p::gossipsub::{
    self, IdentTopic, MessageAcceptance, MessageId, PeerScoreParams, PeerScoreThresholds,
    TopicScoreParams, ValidationMode,
};
use wisp_protocol::envelope::{self, EnvelopeError};
use wisp_protocol::msg::{Beacon, EpochSeed, Witness};
use wisp_protocol::{Kind, NodeId};

/// The witness topic.
pub const POC_TOPIC: &str = "wisp/poc/1";
/// The oracle-signed epoch seed topic.
pub const SEED_TOPIC: &str = "wisp/epoch/1";

/// The largest payload gossiped on any topic: a witness envelope (seeds are smaller).
pub const MAX_GOSSIP_PAYLOAD: usize = Kind::Witness.max_envelope_len();

/// The largest gossipsub frame: one witness plus protobuf framing, and room for control
/// messages (an IHAVE of [`MAX_IHAVE_IDS`] 32-byte ids is about 9 KiB).
pub const MAX_TRANSMIT_SIZE: usize = 16 * 1024;

/// Most message ids advertised in one IHAVE (and IWANT requests accepted from a peer).
pub const MAX_IHAVE_IDS: usize = 256;

/// The topics this network speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Witnesses (`wisp/poc/1`).
    Poc,
    /// Epoch seeds (`wisp/epoch/1`).
    Seed,
}

impl Topic {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Poc => POC_TOPIC,
            Topic::Seed => SEED_TOPIC,
        }
    }

    /// The gossipsub topic.
    pub fn ident(self) -> IdentTopic {
        IdentTopic::new(self.name())
    }

    /// The topic of a gossipsub topic hash, if it is one of ours.
    pub fn from_hash(hash: &gossipsub::TopicHash) -> Option<Topic> {
        [Topic::Poc, Topic::Seed]
            .into_iter()
            .find(|t| t.ident().hash() == *hash)
    }
}

/// Why a gossiped message was rejected (penalised) or ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Not one of our topics.
    #[error("unknown topic")]
    UnknownTopic,
    /// The envelope did not open (size, framing, signature, canonical form, kind).
    #[error("{0}")]
    Envelope(#[from] EnvelopeError),
    /// The witness's embedded beacon did not open.
    #[error("embedded beacon: {0}")]
    Beacon(EnvelopeError),
    /// A node witnessing its own beacon.
    #[error("self-witness")]
    SelfWitness,
    /// A seed not signed by the pinned oracle.
    #[error("seed signed by {0}, not the pinned oracle")]
    NotOracle(NodeId),
}

impl Invalid {
    /// A short fixed name for metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Invalid::UnknownTopic => "unknown_topic",
            Invalid::Envelope(_) => "envelope",
            Invalid::Beacon(_) => "beacon",
            Invalid::SelfWitness => "self_witness",
            Invalid::NotOracle(_) => "not_oracle",
        }
    }
}

/// What a valid gossiped message is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Valid {
    /// A witness: `(witness, beaconer)`.
    Witness {
        /// Who heard the beacon.
        witness: NodeId,
        /// Whose beacon it was.
        beaconer: NodeId,
    },
    /// An oracle-signed epoch seed.
    Seed {
        /// Its epoch.
        epoch: u64,
    },
}

/// Checks a gossiped payload on `topic`: size, signatures over the raw bytes, kind, canonical
/// form; for witnesses the embedded beacon too; for seeds the pinned oracle's signature.
pub fn validate(topic: Topic, data: &[u8], oracle: &NodeId) -> Result<Valid, Invalid> {
    match topic {
        Topic::Poc => {
            let w = envelope::open::<Witness>(data)?;
            let b = w.msg.open_beacon().map_err(Invalid::Beacon)?;
            if b.signer == w.signer {
                return Err(Invalid::SelfWitness);
            }
            Ok(Valid::Witness {
                witness: w.signer,
                beaconer: b.signer,
            })
        }
        Topic::Seed => {
            let s = envelope::open::<EpochSeed>(data)?;
            if s.signer != *oracle {
                return Err(Invalid::NotOracle(s.signer));
            }
            Ok(Valid::Seed { epoch: s.msg.epoch })
        }
    }
}

/// Checks many gossiped payloads at once, with the same verdicts as [`validate`] one by one.
/// The signatures are still checked on the raw bytes before anything is decoded, in two
/// ed25519 batches (every outer envelope, then the witnesses' embedded beacons), which costs
/// about half as much per signature as one strict check each (less again for signers whose
/// keys `keys` holds decompressed); a batch that fails is re-checked
/// one by one, so a bad message costs its senders, not the verdicts of the others.
pub fn validate_batch(
    items: &[(Topic, &[u8])],
    oracle: &NodeId,
    keys: &mut envelope::KeyCache,
) -> Vec<Result<Valid, Invalid>> {
    let mut out: Vec<Option<Result<Valid, Invalid>>> = vec![None; items.len()];
    // Framing and kind, before any signature.
    let mut outer: Vec<(usize, envelope::EnvelopeRef<'_>)> = Vec::with_capacity(items.len());
    for (i, (topic, data)) in items.iter().enumerate() {
        let want = match topic {
            Topic::Poc => Kind::Witness,
            Topic::Seed => Kind::EpochSeed,
        };
        match envelope::EnvelopeRef::parse(data) {
            Ok(env) if env.kind == want => outer.push((i, env)),
            Ok(env) => {
                out[i] = Some(Err(Invalid::Envelope(EnvelopeError::WrongKind {
                    expected: want,
                    got: env.kind,
                })));
            }
            Err(e) => out[i] = Some(Err(Invalid::Envelope(e))),
        }
    }
    let envs: Vec<envelope::EnvelopeRef<'_>> = outer.iter().map(|(_, e)| *e).collect();
    let mut witnesses: Vec<(usize, envelope::Opened<Witness>)> = Vec::new();
    for ((i, env), ok) in outer.iter().zip(envelope::verify_batch_cached(&envs, keys)) {
        let r = match ok {
            Err(e) => Err(Invalid::Envelope(e)),
            Ok(()) => match items[*i].0 {
                Topic::Poc => match env.decode::<Witness>() {
                    Ok(w) => {
                        witnesses.push((*i, w));
                        continue;
                    }
                    Err(e) => Err(Invalid::Envelope(e)),
                },
                Topic::Seed => match env.decode::<EpochSeed>() {
                    Ok(s) if s.signer != *oracle => Err(Invalid::NotOracle(s.signer)),
                    Ok(s) => Ok(Valid::Seed { epoch: s.msg.epoch }),
                    Err(e) => Err(Invalid::Envelope(e)),
                },
            },
        };
        out[*i] = Some(r);
    }
    // The embedded beacons of the witnesses whose own signature held.
    let mut inner: Vec<(usize, &envelope::Opened<Witness>, envelope::EnvelopeRef<'_>)> =
        Vec::with_capacity(witnesses.len());
    for (i, w) in &witnesses {
        match envelope::EnvelopeRef::parse(&w.msg.beacon) {
            Ok(env) if env.kind == Kind::Beacon => inner.push((*i, w, env)),
            Ok(env) => {
                out[*i] = Some(Err(Invalid::Beacon(EnvelopeError::WrongKind {
                    expected: Kind::Beacon,
                    got: env.kind,
                })));
            }
            Err(e) => out[*i] = Some(Err(Invalid::Beacon(e))),
        }
    }
    let envs: Vec<envelope::EnvelopeRef<'_>> = inner.iter().map(|(_, _, e)| *e).collect();
    for ((i, w, env), ok) in inner.iter().zip(envelope::verify_batch_cached(&envs, keys)) {
        let r = ok
            .and_then(|()| env.decode::<Beacon>())
            .map_err(Invalid::Beacon)
            .and_then(|b| {
                if b.signer == w.signer {
                    Err(Invalid::SelfWitness)
                } else {
                    Ok(Valid::Witness {
                        witness: w.signer,
                        beaconer: b.signer,
                    })
                }
            });
        out[*i] = Some(r);
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| unreachable!("every item gets a verdict")))
        .collect()
}

/// The gossipsub verdict for a validation result.
pub fn acceptance(r: &Result<Valid, Invalid>) -> MessageAcceptance {
    match r {
        Ok(_) => MessageAcceptance::Accept,
        // An unknown topic is not the sender's fault in a mixed-version network.
        Err(Invalid::UnknownTopic) => MessageAcceptance::Ignore,
        Err(_) => MessageAcceptance::Reject,
    }
}

/// The message id: BLAKE3 of the payload.
pub fn message_id(m: &gossipsub::Message) -> MessageId {
    MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
}

/// The gossipsub configuration.
pub fn config() -> Result<gossipsub::Config, String> {
    gossipsub::ConfigBuilder::default()
        .protocol_id_prefix("/wisp/meshsub")
        .validate_messages()
        .validation_mode(ValidationMode::Anonymous)
        .message_id_fn(message_id)
        .max_transmit_size(MAX_TRANSMIT_SIZE)
        .max_control_messages_sent(MAX_IHAVE_IDS)
        .heartbeat_interval(Duration::from_secs(1))
        // Seeds are re-published by every node that got one over MQTT; remember ids for an
        // epoch's worth of minutes so those copies are recognised as duplicates.
        .duplicate_cache_time(Duration::from_secs(300))
        .build()
        .map_err(|e| e.to_string())
}

/// Per-topic score weights. Positive contributions are small and capped (see
/// [`score_params`]) so that they cannot buy back invalid messages.
fn topic_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        // P1: up to +6 for ten minutes in the mesh.
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 600.0,
        // P2: up to +10 for being first to deliver.
        first_message_deliveries_weight: 0.1,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 100.0,
        // P3/P3b off: witnesses are bursty (one beacon slot per node per epoch), so a quiet
        // mesh peer is normal, not a sign of an attack.
        mesh_message_deliveries_weight: 0.0,
        mesh_message_deliveries_decay: 0.5,
        mesh_message_deliveries_cap: 100.0,
        mesh_message_deliveries_threshold: 1.0,
        mesh_message_deliveries_window: Duration::from_millis(10),
        mesh_message_deliveries_activation: Duration::from_secs(60),
        mesh_failure_penalty_weight: 0.0,
        mesh_failure_penalty_decay: 0.5,
        // P4: -40 × (invalid messages)², the count decaying by 1 % a second (half-life ≈ 70 s).
        // Even with the best positive score (+20) one invalid message takes a peer below the
        // gossip threshold (-10) and two below the graylist threshold (-80).
        invalid_message_deliveries_weight: -40.0,
        invalid_message_deliveries_decay: 0.99,
    }
}

/// Peer scoring: invalid messages are penalised; IP colocation is not, because honest
/// hotspots behind one carrier-grade NAT share a public address.
pub fn score_params() -> PeerScoreParams {
    let mut p = PeerScoreParams {
        topic_score_cap: 20.0,
        ip_colocation_factor_weight: 0.0,
        ip_colocation_factor_threshold: 1_000.0,
        ..PeerScoreParams::default()
    };
    for t in [Topic::Poc, Topic::Seed] {
        p.topics.insert(t.ident().hash(), topic_params());
    }
    p
}

/// Score thresholds (gossipsub's defaults, stated here so the numbers are in one place).
pub fn score_thresholds() -> PeerScoreThresholds {
    PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wisp_protocol::NodeKey;
    use wisp_protocol::envelope::Envelope;
    use wisp_protocol::msg::EpochParams;
    use wisp_protocol::units::DeciDb;
    use wisp_protocol::{Cell, schedule};

    fn seed() -> EpochSeed {
        EpochSeed {
            epoch: 4,
            start_ms: 0,
            duration_ms: 60_000,
            seed: [4; 32].into(),
            params: EpochParams::default(),
        }
    }

    fn witness(by: &NodeKey, beaconer: &NodeKey) -> Vec<u8> {
        let s = seed();
        let beacon = Envelope::sign(
            beaconer,
            &Beacon {
                epoch: 4,
                nonce: schedule::beacon_nonce(&s.seed.0, &beaconer.id()).into(),
                freq_khz: 2_412_000,
                width_mhz: 20,
                tx_power: DeciDb(200),
                antenna_gain: DeciDb(30),
                cell: Cell::from_degrees(38.7, -9.1, 12).unwrap(),
                tx_ms: 10,
            },
        )
        .to_bytes();
        Envelope::sign(
            by,
            &Witness {
                beacon,
                rssi: DeciDb(-700),
                snr: DeciDb(100),
                freq_khz: 2_412_000,
                rx_ms: 11,
                cell: Cell::from_degrees(38.7, -9.101, 12).unwrap(),
            },
        )
        .to_bytes()
    }

    #[test]
    fn witnesses_and_seeds_are_checked_before_acceptance() {
        let oracle = NodeKey::from_seed(&[1; 32]);
        let a = NodeKey::from_seed(&[2; 32]);
        let b = NodeKey::from_seed(&[3; 32]);
        let good = witness(&a, &b);
        assert_eq!(
            validate(Topic::Poc, &good, &oracle.id()),
            Ok(Valid::Witness {
                witness: a.id(),
                beaconer: b.id()
            })
        );
        let mut tampered = good.clone();
        let n = tampered.len();
        tampered[n - 70] ^= 1;
        let r = validate(Topic::Poc, &tampered, &oracle.id());
        assert!(matches!(r, Err(Invalid::Envelope(_))), "{r:?}");
        assert_eq!(acceptance(&r), MessageAcceptance::Reject);
        // A self-witness (refused by the protocol's own structural check).
        let r = validate(Topic::Poc, &witness(&a, &a), &oracle.id());
        assert!(r.is_err(), "{r:?}");
        assert_eq!(acceptance(&r), MessageAcceptance::Reject);
        // A seed on the witness topic is the wrong kind.
        let s = Envelope::sign(&oracle, &seed()).to_bytes();
        assert!(validate(Topic::Poc, &s, &oracle.id()).is_err());
        assert_eq!(
            validate(Topic::Seed, &s, &oracle.id()),
            Ok(Valid::Seed { epoch: 4 })
        );
        let forged = Envelope::sign(&a, &seed()).to_bytes();
        assert_eq!(
            validate(Topic::Seed, &forged, &oracle.id()),
            Err(Invalid::NotOracle(a.id()))
        );
    }

    #[test]
    fn a_batch_gets_the_verdicts_of_one_by_one_checks() {
        let oracle = NodeKey::from_seed(&[1; 32]);
        let keys: Vec<NodeKey> = (2..8u8).map(|i| NodeKey::from_seed(&[i; 32])).collect();
        let mut items: Vec<(Topic, Vec<u8>)> = Vec::new();
        for w in &keys {
            for b in &keys {
                items.push((Topic::Poc, witness(w, b)));
            }
        }
        // A witness whose own signature is bad, one whose embedded beacon's is, a beacon as a
        // witness, garbage, seeds from the oracle and from someone else, and a seed on the
        // witness topic.
        let mut bad_outer = witness(&keys[0], &keys[1]);
        let n = bad_outer.len();
        bad_outer[n - 70] ^= 1;
        items.push((Topic::Poc, bad_outer));
        let mut w = envelope::open::<Witness>(&witness(&keys[2], &keys[3]))
            .unwrap()
            .msg;
        // A byte of the beacon's signature (the envelope ends with it and a zero count).
        let sig = w.beacon.len() - 10;
        w.beacon[sig] ^= 1;
        items.push((Topic::Poc, Envelope::sign(&keys[2], &w).to_bytes()));
        let beacon_only = envelope::open::<Witness>(&witness(&keys[4], &keys[5]))
            .unwrap()
            .msg
            .beacon;
        items.push((Topic::Poc, beacon_only));
        items.push((Topic::Poc, vec![1, 2, 3]));
        items.push((Topic::Seed, Envelope::sign(&oracle, &seed()).to_bytes()));
        items.push((Topic::Seed, Envelope::sign(&keys[0], &seed()).to_bytes()));
        items.push((Topic::Poc, Envelope::sign(&oracle, &seed()).to_bytes()));
        let refs: Vec<(Topic, &[u8])> = items.iter().map(|(t, b)| (*t, b.as_slice())).collect();
        let one_by_one: Vec<_> = refs
            .iter()
            .map(|(t, b)| validate(*t, b, &oracle.id()))
            .collect();
        let mut keys = envelope::KeyCache::new(64);
        let batch = validate_batch(&refs, &oracle.id(), &mut keys);
        assert_eq!(batch, one_by_one);
        let accepted = batch.iter().filter(|r| r.is_ok()).count();
        // 30 witnesses of others' beacons and the oracle's seed; the self-witnesses and the
        // seven bad items are not.
        assert_eq!(accepted, 31, "{batch:?}");
        assert!(
            matches!(batch[37], Err(Invalid::Beacon(_))),
            "{:?}",
            batch[37]
        );
        // And a batch of one, and of none.
        assert_eq!(
            validate_batch(&refs[1..2], &oracle.id(), &mut keys),
            one_by_one[1..2]
        );
        assert!(validate_batch(&[], &oracle.id(), &mut keys).is_empty());
    }

    #[test]
    fn scoring_is_valid_and_never_penalises_a_shared_ip() {
        let p = score_params();
        p.validate().unwrap();
        score_thresholds().validate().unwrap();
        assert_eq!(p.ip_colocation_factor_weight, 0.0);
        // One invalid message takes a peer with the best possible positive score below the
        // gossip threshold; two take it below the graylist threshold.
        let t = topic_params();
        let best = p.topic_score_cap;
        let th = score_thresholds();
        assert!(best + t.invalid_message_deliveries_weight < th.gossip_threshold);
        assert!(best + 4.0 * t.invalid_message_deliveries_weight < th.graylist_threshold);
        config().unwrap();
    }
}
