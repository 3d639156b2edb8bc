//! The test content on the connection: the sender of the keyed stream, the receiver that
//! checks it (both driving [`super::stream`]), and this side's IP-layer byte counts, sampled
//! during a direction to turn payload figures into the IP-layer rates receipts carry.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::{Instant, sleep_until, timeout};

use super::cheat::CheatingSender;
use super::stream::{Caps, Keystream, Receiver, ReceiverReport, SendLog};

/// Bytes per write of test content.
pub(super) const CHUNK: usize = 64 * 1024;
/// How long a sender keeps going past the time cap before it gives up on a receiver that never
/// said stop.
pub(super) const SENDER_GRACE: Duration = Duration::from_secs(2);

/// Sends the keyed stream until the receiver stops it, the byte cap, or the time cap plus
/// [`SENDER_GRACE`]. `cheat` injects faults (only with the `cheats` feature).
pub(super) async fn send_content(
    mut send: quinn::SendStream,
    mut ks: Keystream,
    caps: Caps,
    mut cheat: Option<CheatingSender>,
) -> SendLog {
    let mut log = SendLog::default();
    let mut buf = vec![0u8; CHUNK];
    let start = Instant::now();
    loop {
        let written = log.total;
        if written >= caps.bytes || start.elapsed() >= caps.duration + SENDER_GRACE {
            let _ = send.finish();
            break;
        }
        let n = usize::try_from(caps.bytes - written)
            .unwrap_or(CHUNK)
            .min(CHUNK);
        ks.fill(&mut buf[..n]);
        if let Some(c) = &mut cheat
            && !c.tamper(written, &mut buf[..n], &mut send, caps).await
        {
            break;
        }
        match send.write_all(&buf[..n]).await {
            Ok(()) => log.record(start.elapsed(), n as u64),
            // Stopped by the receiver (the normal end), or the connection went away.
            Err(_) => break,
        }
        // quinn accepts writes without yielding while the send window has room, and the
        // connection driver this write woke sits in this worker's LIFO slot, where no other
        // worker can steal it: without a yield, nothing is sent until the window is full.
        tokio::task::yield_now().await;
    }
    log
}

/// Receives and checks one direction's stream (accepted within the stall limit).
pub(super) async fn receive_content(
    conn: quinn::Connection,
    ks: Keystream,
    caps: Caps,
) -> ReceiverReport {
    receive_content_timed(conn, ks, caps).await.0
}

/// [`receive_content`], with the moment the first byte arrived.
pub(super) async fn receive_content_timed(
    conn: quinn::Connection,
    ks: Keystream,
    caps: Caps,
) -> (ReceiverReport, Option<Instant>) {
    let start = Instant::now();
    let mut rx = Receiver::new(ks, caps, Duration::ZERO);
    let mut recv = match timeout(caps.stall, conn.accept_uni()).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => {
            rx.handle_transport_error(start.elapsed());
            return (rx.report().unwrap_or_else(|| unreachable!("ended")), None);
        }
        Err(_) => {
            rx.handle_timeout(start.elapsed());
            let report = rx
                .report()
                .unwrap_or_else(|| unreachable!("the stall limit passed"));
            return (report, None);
        }
    };
    while !rx.is_done() {
        let wake = rx.poll_timeout().unwrap_or(Duration::ZERO);
        tokio::select! {
            chunk = recv.read_chunk(CHUNK * 4, true) => {
                let now = start.elapsed();
                match chunk {
                    Ok(Some(c)) => { rx.handle_data(now, &c.bytes); }
                    Ok(None) => { rx.handle_fin(now); }
                    Err(_) => { rx.handle_transport_error(now); }
                }
            }
            () = sleep_until(start + wake) => { rx.handle_timeout(start.elapsed()); }
        }
        // Buffered data is returned without yielding; let the connection driver run.
        tokio::task::yield_now().await;
    }
    // Tell the sender to stop; a sender that already finished ignores it.
    let _ = recv.stop(0u32.into());
    let report = rx
        .report()
        .unwrap_or_else(|| unreachable!("loop ends when done"));
    (report, rx.first().map(|f| start + f))
}

/// This side's cumulative IP-layer bytes of one direction of `conn` (`sent`: what it sent,
/// less what was lost; else what it received): UDP payloads plus UDP and IP headers.
pub(super) fn ip_bytes(conn: &quinn::Connection, sent: bool) -> u64 {
    let st = conn.stats();
    let ip_header: u64 = match conn.remote_address() {
        SocketAddr::V4(_) => 20,
        SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some() => 20,
        SocketAddr::V6(_) => 40,
    };
    let (bytes, datagrams) = if sent {
        (
            st.udp_tx.bytes.saturating_sub(st.path.lost_bytes),
            st.udp_tx.datagrams.saturating_sub(st.path.lost_packets),
        )
    } else {
        (st.udp_rx.bytes, st.udp_rx.datagrams)
    };
    bytes + datagrams * (8 + ip_header)
}

/// Samples taken at `Instant`s, as times since `anchor` (samples before it are dropped).
pub(super) fn since(anchor: Instant, samples: &[(Instant, u64)]) -> Vec<(Duration, u64)> {
    samples
        .iter()
        .filter_map(|(at, b)| at.checked_duration_since(anchor).map(|d| (d, *b)))
        .collect()
}
