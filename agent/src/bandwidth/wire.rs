//! Frames on the QUIC control stream of a test.
//!
//! Each frame is a little-endian `u16` length and a canonical postcard [`Ctl`], at most
//! [`MAX_FRAME`] bytes. The prover opens the one bidirectional control stream; test content
//! flows on one unidirectional stream per direction, opened by that direction's sender.

use serde::{Deserialize, Serialize};
use wisp_protocol::bytes::ByteArray;
use wisp_protocol::envelope::{decode_canonical, encode_payload};
use wisp_protocol::msg::{BwFailure, Direction};

use super::stream::End;

/// The largest control frame body.
pub const MAX_FRAME: usize = 8192;
pub use super::stream::MAX_REPORT_BINS;

/// How a receiver's direction ended, on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum WireEnd {
    /// Byte cap.
    ByteCap,
    /// Time cap.
    TimeCap,
    /// Failed.
    Failed(BwFailure),
}

impl From<End> for WireEnd {
    fn from(e: End) -> Self {
        match e {
            End::ByteCap => WireEnd::ByteCap,
            End::TimeCap => WireEnd::TimeCap,
            End::Failed(f) => WireEnd::Failed(f),
        }
    }
}

impl From<WireEnd> for End {
    fn from(e: WireEnd) -> Self {
        match e {
            WireEnd::ByteCap => End::ByteCap,
            WireEnd::TimeCap => End::TimeCap,
            WireEnd::Failed(f) => End::Failed(f),
        }
    }
}

/// One control message.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Ctl {
    /// Prover → measurer, first: which negotiated test this connection is for.
    Hello {
        /// The test id from the request.
        test_id: ByteArray<16>,
    },
    /// Measurer → prover: the stream secret, matching the request's commitment.
    Reveal {
        /// The secret.
        secret: ByteArray<32>,
    },
    /// Measurer → prover: echo this.
    Ping {
        /// Sequence number.
        seq: u32,
    },
    /// Prover → measurer: the echo.
    Pong {
        /// The ping's sequence number.
        seq: u32,
    },
    /// Measurer → prover: the direction starts now.
    Begin {
        /// Which.
        direction: Direction,
    },
    /// Prover → measurer: what the prover received (download).
    Report {
        /// How the direction ended at the prover.
        end: WireEnd,
        /// Verified bytes.
        bytes: u64,
        /// From the first byte to the end, ms.
        duration_ms: u32,
        /// The 100 ms bins.
        bins: Vec<u64>,
    },
    /// Measurer → prover: the upload is over (the measurer also stops the stream).
    Ended,
    /// Measurer → prover: receipts to co-sign (envelope bytes, test order).
    Sign {
        /// Envelopes signed by the measurer.
        receipts: Vec<Vec<u8>>,
    },
    /// Prover → measurer: its co-signatures, `None` where it declines.
    Cosigned {
        /// One per receipt.
        signatures: Vec<Option<ByteArray<64>>>,
    },
}

/// Why the control stream failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Writing to the stream failed (the stream was stopped or the connection lost).
    #[error("control stream: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading from the stream failed (reset, connection lost, or a frame cut short).
    #[error("control stream: {0}")]
    Read(#[from] quinn::ReadExactError),
    /// The peer closed the control stream.
    #[error("control stream closed")]
    Closed,
    /// A frame over [`MAX_FRAME`] or one that does not decode canonically.
    #[error("bad control frame")]
    Bad,
}

/// Writes one frame.
pub async fn write(send: &mut quinn::SendStream, msg: &Ctl) -> Result<(), WireError> {
    let body = encode_payload(msg);
    let len = u16::try_from(body.len()).map_err(|_| WireError::Bad)?;
    if body.len() > MAX_FRAME {
        return Err(WireError::Bad);
    }
    let mut frame = Vec::with_capacity(2 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    Ok(send.write_all(&frame).await?)
}

/// Reads one frame.
pub async fn read(recv: &mut quinn::RecvStream) -> Result<Ctl, WireError> {
    let mut len = [0u8; 2];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = usize::from(u16::from_le_bytes(len));
    if len > MAX_FRAME {
        return Err(WireError::Bad);
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    decode_canonical(&body).map_err(|_| WireError::Bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_report_fits_a_frame() {
        let r = Ctl::Report {
            end: WireEnd::TimeCap,
            bytes: u64::MAX,
            duration_ms: 8000,
            bins: vec![u64::MAX; MAX_REPORT_BINS],
        };
        assert!(encode_payload(&r).len() < MAX_FRAME);
    }
}
