//! Fault injection: how a dishonest prover behaves, for tests and the benchmark's cheat runs.
//!
//! Only with the `cheats` feature, which the crate's own tests and examples turn on: a
//! production build cannot be made to cheat. Without it, [`Cheat`] and [`CheatingSender`] are
//! empty enums, so the hooks the prover and the content sender call compile to nothing.

#[cfg(feature = "cheats")]
pub use with_cheats::Cheat;
#[cfg(feature = "cheats")]
pub(super) use with_cheats::CheatingSender;
#[cfg(not(feature = "cheats"))]
pub(super) use without_cheats::{Cheat, CheatingSender};

#[cfg(feature = "cheats")]
mod with_cheats {
    use tokio::time::sleep;
    use wisp_protocol::msg::Direction;

    use super::super::content::SENDER_GRACE;
    use super::super::stream::{Caps, Keystream, ReceiverReport};

    /// The key of the other stream a [`Cheat::Garbage`] prover sends.
    const GARBAGE_SEED: [u8; 32] = [0x5a; 32];

    /// Fault injection for tests and the benchmark's cheat runs: how a dishonest prover behaves.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Cheat {
        /// Upload: after `after` bytes, send bytes of another stream.
        Garbage {
            /// Honest bytes first.
            after: u64,
        },
        /// Upload: after `after` bytes, send the first bytes again.
        Replay {
            /// Honest bytes first.
            after: u64,
        },
        /// Upload: end the stream after `after` bytes.
        Truncate {
            /// Bytes sent.
            after: u64,
        },
        /// Upload: stop sending after `after` bytes but keep the stream open.
        Stall {
            /// Bytes sent.
            after: u64,
        },
        /// Download: report this many times the bytes received.
        InflateReport {
            /// Multiplier.
            factor: u64,
        },
    }

    impl Cheat {
        /// The bytes and bins a prover reports for the download it received `r`.
        pub(in super::super) fn report(self, r: &ReceiverReport) -> (u64, Vec<u64>) {
            match self {
                Cheat::InflateReport { factor } => (
                    r.bytes * factor,
                    r.bins.iter().map(|b| b * factor).collect(),
                ),
                _ => (r.bytes, r.bins.clone()),
            }
        }
    }

    /// A cheating sender of the upload: the other stream it sends, the first chunk it replays.
    #[derive(Debug)]
    pub(in super::super) struct CheatingSender {
        cheat: Cheat,
        garbage: Keystream,
        first: Option<Vec<u8>>,
    }

    impl CheatingSender {
        /// A sender that cheats as `cheat` says.
        pub(in super::super) fn new(cheat: Cheat) -> Self {
            Self {
                cheat,
                garbage: Keystream::new(&GARBAGE_SEED, &[0xee; 16], Direction::Up),
                first: None,
            }
        }

        /// Tampers with `buf`, the next chunk once `written` bytes went out. `false`: send
        /// nothing more (the stream was ended, or held open and silent, here).
        pub(in super::super) async fn tamper(
            &mut self,
            written: u64,
            buf: &mut [u8],
            send: &mut quinn::SendStream,
            caps: Caps,
        ) -> bool {
            match self.cheat {
                Cheat::Garbage { after } if written >= after => self.garbage.fill(buf),
                Cheat::Replay { after } if written >= after => {
                    if let Some(f) = &self.first {
                        let m = buf.len().min(f.len());
                        buf[..m].copy_from_slice(&f[..m]);
                    }
                }
                Cheat::Truncate { after } if written >= after => {
                    let _ = send.finish();
                    return false;
                }
                Cheat::Stall { after } if written >= after => {
                    // Hold the stream open and silent past every deadline of the receiver.
                    sleep(caps.duration + caps.stall * 2 + SENDER_GRACE).await;
                    return false;
                }
                _ => {}
            }
            if self.first.is_none() {
                self.first = Some(buf.to_vec());
            }
            true
        }
    }
}

#[cfg(not(feature = "cheats"))]
mod without_cheats {
    use super::super::stream::{Caps, ReceiverReport};

    /// No cheat: this type has no values without the `cheats` feature.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(in super::super) enum Cheat {}

    impl Cheat {
        pub(in super::super) fn report(self, _: &ReceiverReport) -> (u64, Vec<u64>) {
            match self {}
        }
    }

    /// No cheating sender: this type has no values without the `cheats` feature.
    #[derive(Debug)]
    pub(in super::super) enum CheatingSender {}

    impl CheatingSender {
        pub(in super::super) fn new(cheat: Cheat) -> Self {
            match cheat {}
        }

        pub(in super::super) async fn tamper(
            &mut self,
            _: u64,
            _: &mut [u8],
            _: &mut quinn::SendStream,
            _: Caps,
        ) -> bool {
            match *self {}
        }
    }
}
