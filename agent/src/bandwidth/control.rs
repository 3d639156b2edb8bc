//! Control-stream plumbing shared by both roles: the reader task, pings, timeouts and the
//! conversions of durations to the wire's integers.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::BwConfig;
use super::stream::Caps;
use super::wire::{self, Ctl, WireError};

/// Wait for single control answers (pong, report after the direction, co-signatures).
pub(super) const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// Pings in flight at most.
pub(super) const MAX_PINGS_IN_FLIGHT: usize = 16;
/// Control frames buffered between the reader task and the session.
pub(super) const CONTROL_QUEUE: usize = 16;

pub(super) fn caps_of(cfg: &BwConfig, byte_cap: u64, duration: Duration) -> Caps {
    Caps {
        bytes: byte_cap,
        duration,
        stall: cfg.stall,
    }
}

pub(super) fn elapsed_us(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX)
}

pub(super) fn ms_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Spawns a task that reads control frames into a bounded queue (ended by an `Err`).
pub(super) fn spawn_reader(
    mut recv: quinn::RecvStream,
) -> (mpsc::Receiver<Result<Ctl, WireError>>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
    let h = tokio::spawn(async move {
        loop {
            match wire::read(&mut recv).await {
                Ok(m) => {
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    (rx, h)
}

pub(super) struct Pings {
    next: u32,
    in_flight: VecDeque<(u32, Instant)>,
}

impl Pings {
    pub(super) fn new() -> Self {
        Self {
            next: 0,
            in_flight: VecDeque::new(),
        }
    }

    pub(super) async fn send(
        &mut self,
        ctl: &mut quinn::SendStream,
    ) -> Result<(), wire::WireError> {
        if self.in_flight.len() >= MAX_PINGS_IN_FLIGHT {
            self.in_flight.pop_front();
        }
        let seq = self.next;
        self.next = self.next.wrapping_add(1);
        self.in_flight.push_back((seq, Instant::now()));
        wire::write(ctl, &Ctl::Ping { seq }).await
    }

    pub(super) fn pong(&mut self, seq: u32) -> Option<u32> {
        let i = self.in_flight.iter().position(|(s, _)| *s == seq)?;
        let (_, at) = self.in_flight.remove(i)?;
        Some(elapsed_us(at))
    }
}

pub(super) async fn timeout_at<F: std::future::Future>(
    deadline: Instant,
    f: F,
) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, f).await.ok()
}
