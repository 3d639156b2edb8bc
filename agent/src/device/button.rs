//! The router's button (`device.button_gpiochip`, `device.button_line`): a task samples the
//! GPIO line through the firmware's [`Button`] debouncer and hands each press to the
//! operator's program (`device.button_hook`), as OpenWrt's `/etc/rc.button` scripts are.
//!
//! **Presses.** Short (released before 3 s), long (held 3 s) and very long (held 10 s), the
//! firmware's [`ButtonEvent`]s; a 10 s hold gives a long press at 3 s and a very long one at
//! 10 s. Each is logged and runs `<hook> short|long|very_long`. What a press does is the
//! hook's: the agent never erases its node key or its outbox on a press, since the key is the
//! hotspot's identity and its rewards (docs/INSTALL.md, "Backups").
//!
//! **Sampling.** The line is read every [`IDLE_POLL`] while the button is up and every
//! [`HELD_POLL`] (or at the debouncer's next deadline, if sooner) while it is down or
//! settling: a press shorter than [`IDLE_POLL`] may go unseen, and the debounce (30 ms)
//! already drops shorter ones as contact bounce. Twenty reads a second cost one `ioctl` each.
//!
//! **The hook** runs one press at a time in a task of its own, with [`HOOK_TIMEOUT`]; presses
//! beyond [`HOOK_QUEUE`] waiting are dropped and logged. A failing hook (no start, a non-zero
//! exit, over the timeout) is logged with its status.
//!
//! **Health.** `button` passes on each read of the line and fails on a read error (logged once
//! per run of failures).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use embedded_hal::digital::InputPin;
use tokio::sync::mpsc;
use wisp_firmware::button::{Button, ButtonEvent};

use crate::status::Check;

/// How often the line is read while the button is up.
pub const IDLE_POLL: Duration = Duration::from_millis(50);
/// How often the line is read while the button is down or a level is settling.
pub const HELD_POLL: Duration = Duration::from_millis(10);
/// The longest a hook may run before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Presses waiting for the hook; beyond this they are dropped.
pub const HOOK_QUEUE: usize = 4;

/// The hook's argument for `event`.
pub fn press_name(event: ButtonEvent) -> &'static str {
    match event {
        ButtonEvent::ShortPress => "short",
        ButtonEvent::LongPress => "long",
        ButtonEvent::VeryLongPress => "very_long",
    }
}

/// The last read of the line as a [`Check`], shared with the device's health.
#[derive(Debug, Clone, Default)]
pub struct LineCheck(Arc<AtomicU8>);

impl LineCheck {
    fn set(&self, c: Check) {
        let v = match c {
            Check::NotChecked => 0,
            Check::Passed => 1,
            Check::Failed => 2,
        };
        self.0.store(v, Ordering::Relaxed);
    }

    /// The check as of the last read.
    pub fn get(&self) -> Check {
        match self.0.load(Ordering::Relaxed) {
            1 => Check::Passed,
            2 => Check::Failed,
            _ => Check::NotChecked,
        }
    }
}

/// An input line whose level another task sets: a simulated button (tests, a simulated
/// board). Reads fail while the line is broken.
#[derive(Debug, Clone, Default)]
pub struct SharedPin {
    down: Arc<AtomicBool>,
    broken: Arc<AtomicBool>,
}

impl SharedPin {
    /// Holds the button down (`true`) or lets it go.
    pub fn press(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Makes reads fail (`true`) or work again.
    pub fn break_line(&self, broken: bool) {
        self.broken.store(broken, Ordering::SeqCst);
    }
}

/// The error of a [`SharedPin`] that is broken.
#[derive(Debug)]
pub struct BrokenLine;

impl embedded_hal::digital::Error for BrokenLine {
    fn kind(&self) -> embedded_hal::digital::ErrorKind {
        embedded_hal::digital::ErrorKind::Other
    }
}

impl embedded_hal::digital::ErrorType for SharedPin {
    type Error = BrokenLine;
}

/// High while pressed: use it with [`ActiveLevel::High`](wisp_firmware::button::ActiveLevel).
impl InputPin for SharedPin {
    fn is_high(&mut self) -> Result<bool, BrokenLine> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(BrokenLine);
        }
        Ok(self.down.load(Ordering::SeqCst))
    }
    fn is_low(&mut self) -> Result<bool, BrokenLine> {
        self.is_high().map(|h| !h)
    }
}

/// Samples `button` until `presses` is closed, sending each press (tokio time since the start
/// is the debouncer's clock) and recording each read in `check`.
pub async fn button_loop<P: InputPin>(
    mut button: Button<P>,
    presses: mpsc::Sender<ButtonEvent>,
    check: LineCheck,
) {
    let origin = tokio::time::Instant::now();
    let mut failing = false;
    loop {
        let now = u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        match button.poll(now) {
            Ok(event) => {
                failing = false;
                check.set(Check::Passed);
                if let Some(e) = event {
                    tracing::info!(press = press_name(e), "button pressed");
                    if let Err(mpsc::error::TrySendError::Full(e)) = presses.try_send(e) {
                        tracing::warn!(
                            press = press_name(e),
                            "button press dropped: the hook is busy"
                        );
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("reading the button failed: {e:?}");
                }
                failing = true;
                check.set(Check::Failed);
            }
        }
        if presses.is_closed() {
            return;
        }
        let settling = button.is_pressed() || button.poll_timeout().is_some();
        let mut next = origin.elapsed() + if settling { HELD_POLL } else { IDLE_POLL };
        if let Some(t) = button.poll_timeout() {
            next = next.min(Duration::from_millis(t));
        }
        tokio::time::sleep_until(origin + next).await;
    }
}

/// Runs `hook` once per press received, one at a time, until the sender is dropped.
pub async fn run_hook(hook: PathBuf, mut presses: mpsc::Receiver<ButtonEvent>) {
    while let Some(e) = presses.recv().await {
        let press = press_name(e);
        let child = tokio::process::Command::new(&hook)
            .arg(press)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(err) => {
                tracing::warn!(hook = %hook.display(), press, "the button hook did not start: {err}");
                continue;
            }
        };
        match tokio::time::timeout(HOOK_TIMEOUT, child.wait()).await {
            Ok(Ok(s)) if s.success() => tracing::info!(press, "button hook done"),
            Ok(Ok(s)) => {
                tracing::warn!(hook = %hook.display(), press, "the button hook failed: {s}")
            }
            Ok(Err(err)) => {
                tracing::warn!(hook = %hook.display(), press, "the button hook failed: {err}")
            }
            Err(_) => {
                let _ = child.kill().await;
                tracing::warn!(
                    hook = %hook.display(),
                    press,
                    "the button hook ran over {} s and was killed",
                    HOOK_TIMEOUT.as_secs()
                );
            }
        }
    }
}

/// Spawns the sampler and, with a hook, its runner on the current tokio runtime; without a
/// hook the presses are only logged. Returns the tasks (abort them to stop) and the check.
pub fn spawn<P: InputPin + Send + 'static>(
    button: Button<P>,
    hook: Option<PathBuf>,
) -> (Vec<tokio::task::JoinHandle<()>>, LineCheck) {
    let check = LineCheck::default();
    let (tx, mut rx) = mpsc::channel(HOOK_QUEUE);
    let mut tasks = vec![tokio::spawn(button_loop(button, tx, check.clone()))];
    tasks.push(match hook {
        Some(h) => tokio::spawn(run_hook(h, rx)),
        None => tokio::spawn(async move { while rx.recv().await.is_some() {} }),
    });
    (tasks, check)
}

#[cfg(test)]
mod tests {
    use wisp_firmware::button::{ActiveLevel, ButtonConfig};

    use super::*;

    fn start(pin: &SharedPin) -> (mpsc::Receiver<ButtonEvent>, LineCheck) {
        let cfg = ButtonConfig {
            active: ActiveLevel::High,
            ..ButtonConfig::default()
        };
        let (tx, rx) = mpsc::channel(HOOK_QUEUE);
        let check = LineCheck::default();
        tokio::spawn(button_loop(
            Button::new(pin.clone(), cfg),
            tx,
            check.clone(),
        ));
        (rx, check)
    }

    async fn hold(pin: &SharedPin, ms: u64) {
        pin.press(true);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        pin.press(false);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn presses_are_told_apart_by_how_long_they_are_held() {
        let pin = SharedPin::default();
        let (mut rx, check) = start(&pin);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(check.get(), Check::Passed);
        assert!(rx.try_recv().is_err(), "nothing pressed, nothing sent");

        // Contact bounce: held 20 ms, under the 30 ms debounce.
        hold(&pin, 20).await;
        assert!(rx.try_recv().is_err(), "bounce counted as a press");
        hold(&pin, 200).await;
        assert_eq!(rx.try_recv().ok(), Some(ButtonEvent::ShortPress));
        hold(&pin, 4_000).await;
        assert_eq!(rx.try_recv().ok(), Some(ButtonEvent::LongPress));
        assert!(
            rx.try_recv().is_err(),
            "a long hold's release sent a short press too"
        );
        hold(&pin, 11_000).await;
        assert_eq!(rx.try_recv().ok(), Some(ButtonEvent::LongPress));
        assert_eq!(rx.try_recv().ok(), Some(ButtonEvent::VeryLongPress));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_press_is_sent_while_the_button_is_still_held() {
        let pin = SharedPin::default();
        let (mut rx, _check) = start(&pin);
        pin.press(true);
        tokio::time::sleep(Duration::from_millis(2_900)).await;
        assert!(rx.try_recv().is_err(), "long before 3 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(rx.try_recv().ok(), Some(ButtonEvent::LongPress));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_line_fails_the_check_and_recovers() {
        let pin = SharedPin::default();
        let (_rx, check) = start(&pin);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(check.get(), Check::Passed);
        pin.break_line(true);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(check.get(), Check::Failed);
        pin.break_line(false);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(check.get(), Check::Passed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_sampler_stops_when_nobody_listens() {
        let pin = SharedPin::default();
        let cfg = ButtonConfig::default();
        let (tx, rx) = mpsc::channel(1);
        let task = tokio::spawn(button_loop(Button::new(pin, cfg), tx, LineCheck::default()));
        drop(rx);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the sampler went on")
            .unwrap();
    }

    /// The hook is a real program: each press runs it with the press's name, in order.
    #[tokio::test]
    async fn the_hook_runs_once_per_press_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("presses");
        let hook = dir.path().join("hook.sh");
        std::fs::write(
            &hook,
            format!("#!/bin/sh\necho \"$1\" >> '{}'\n", log.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (tx, rx) = mpsc::channel(HOOK_QUEUE);
        let runner = tokio::spawn(run_hook(hook, rx));
        for e in [
            ButtonEvent::ShortPress,
            ButtonEvent::LongPress,
            ButtonEvent::VeryLongPress,
        ] {
            tx.send(e).await.unwrap();
        }
        drop(tx);
        tokio::time::timeout(Duration::from_secs(60), runner)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "short\nlong\nvery_long\n"
        );
    }
}
