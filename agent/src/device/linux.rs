//! `device.kind = "linux"`: the router's own hardware, each part optional.
//!
//! - **Beacons out**: [`LinuxRadio`] sets the wisp vendor element through hostapd's control
//!   socket (`device.hostapd_ctrl`). hostapd must answer `STATUS` with its frequency when the
//!   device opens; a restarted hostapd is reconnected to once per failed transmission.
//!   Each transmission ends [`BEACON_ON_AIR`] after it began: a task puts the operator's own
//!   elements back over a control connection of its own.
//! - **Beacons in**: a task on the daemon's tokio runtime ([`scan_loop`]) asks nl80211 for a
//!   scan once per beacon slot, in the middle of the slot's on-air window ([`SlotClock`], from
//!   the epoch seed the daemon hands over with [`DeviceIo::set_epoch`]); before the first seed,
//!   every `device.scan_interval_s`. Each result goes through a bounded channel;
//!   [`DeviceIo::poll_received`] passes it to [`LinuxRadio::handle_scan`], which keeps one
//!   frame per new beacon.
//! - **GNSS**: a thread reads the receiver's tty (opened raw at `device.gnss_baud`) into an
//!   [`NmeaParser`]; the newest fix waits in a one-slot mailbox for [`DeviceIo::poll_fix`].
//! - **Secure element**: an ATECC608 on an i2c-dev adapter (`device.se_i2c`), asked only to
//!   attest (`wisp-agent device`, `onboard`); each attestation blocks for its few tens of ms.
//! - **Status LED**: three GPIO lines (`device.led_gpiochip`, `device.led_lines`) driven by a
//!   task ([`led_loop`]) that ticks the firmware's `StatusLed` at its own deadlines and takes
//!   each new [`Health`] through a watch channel.
//!
//! # Receive times
//!
//! A scan reports, per BSS, when the kernel last received a frame from it
//! (`NL80211_BSS_LAST_SEEN_BOOTTIME`, else the coarser `SEEN_MS_AGO`). Right after the dump the
//! task reads `CLOCK_BOOTTIME` and the agent's wall clock back to back; a frame's `rx_ms` is
//! that wall time minus the entry's age. It is the time of the *last* frame carrying the
//! element before the scan, not of the first. Since every transmission ends [`BEACON_ON_AIR`]
//! (1.5 s) after `tx_ms`, that frame went out at most 1.5 s (and one beacon interval) after
//! `tx_ms`, within the oracle's 2 s `max_witness_lag_ms` whenever the receiver scanned; the
//! slot-aligned scan lands about 0.75 s after it. A scan outside the window does not see the
//! element at all (the kernel keeps each BSS's latest elements), so no late stamp is possible.
//! The time is off by a wall-clock step (NTP) during the age (at most the radio's 15 s entry
//! limit).
//!
//! # Health
//!
//! Only what was done: `radio` passes when hostapd answered at open and on each beacon that
//! went out, fails on one that did not; `receive` passes on a completed scan and fails on a
//! refused or unfinished one; `gnss` passes on a fix and fails when the port closes, errs, or
//! yields 2 KiB without one valid NMEA sentence (a wrong baud rate). A receiver that speaks
//! valid NMEA without a fix leaves `gnss` not checked. `secure_element` passes on a signed
//! attestation and fails when the chip did not sign.

use std::future::Future;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use wisp_firmware::button::Button;
use wisp_firmware::gnss::{Fix, NmeaParser};
use wisp_firmware::gpiocdev::GpioLine;
use wisp_firmware::i2cdev::{I2cDev, SleepDelay};
use wisp_firmware::led::{Pattern, Polarity, RgbOutput, RgbPins, StatusLed};
use wisp_firmware::radio::linux::nl80211::{self, Nl80211Scanner, ScanEntry};
use wisp_firmware::radio::linux::{
    BEACON_ON_AIR, LinuxRadio, LinuxRadioConfig, LinuxRadioError, end_transmission,
};
use wisp_firmware::radio::{Channel, Radio};
use wisp_firmware::se::{Atecc608, AteccConfig, AttestError};
use wisp_protocol::msg::{EpochSeed, GnssFix};
use wisp_protocol::schedule;

use super::button::LineCheck;
use super::{DeviceAttestation, DeviceError, DeviceIo, Health, RxFrame, gnss_fix};
use crate::config::{ButtonConfig, LedConfig, LinuxDeviceConfig, ScanConfig, SecureElementConfig};
use crate::core::TxFrame;
use crate::status::{Check, DeviceChecks};
use crate::wallclock::wall_ms;

/// Scans waiting for the daemon. The task waits when both are taken (the daemon polls at least
/// once a second, scans come every 2 s or more).
const SCAN_QUEUE: usize = 2;
/// Longest wait for one scan to finish: a one-channel AP scan takes well under a second, all
/// channels a few seconds.
const SCAN_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from the GNSS port without one valid sentence before it is called failed.
const GNSS_GARBAGE_LIMIT: usize = 2_048;

/// One scan's outcome, as [`scan_loop`] hands it to the device.
#[derive(Debug, Clone, PartialEq)]
pub enum Scan {
    /// The interface's BSS table, each entry's age taken at `wall_ms`.
    Done {
        /// The entries.
        entries: Vec<ScanEntry>,
        /// The agent's wall clock when the ages were taken.
        wall_ms: u64,
    },
    /// The kernel refused the scan or it did not finish.
    Failed(String),
}

/// Where scans come from: nl80211 on a router; constructed entries in tests.
pub trait ScanSource: Send + 'static {
    /// Scans `freqs_mhz` and returns the BSS table.
    fn scan(
        &mut self,
        freqs_mhz: &[u32],
    ) -> impl Future<Output = Result<Vec<ScanEntry>, String>> + Send;

    /// The wall clock (Unix ms) scans are timed by against the beacon slots: the agent's
    /// ([`wall_ms`]); a test's follows paused tokio time.
    fn now_ms(&self) -> u64 {
        wall_ms()
    }
}

impl ScanSource for Nl80211Scanner {
    async fn scan(&mut self, freqs_mhz: &[u32]) -> Result<Vec<ScanEntry>, String> {
        Nl80211Scanner::scan(self, freqs_mhz)
            .await
            .map_err(|e| e.to_string())
    }
}

/// When an epoch's beacons are on air, for scanning: every node transmits at the same offset
/// into its slot ([`schedule::beacon_tx_offset_ms`]) and takes the element off
/// [`BEACON_ON_AIR`] later, so one scan per slot, in the middle of that window, hears every
/// beacon of the slot, and nothing is heard between the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotClock {
    /// The epoch's start, Unix ms.
    pub start_ms: u64,
    /// One slot's length, ms (at least 1).
    pub slot_ms: u64,
    /// From a slot's start to its scan, ms: the transmit offset plus half the on-air time.
    pub scan_offset_ms: u64,
}

impl SlotClock {
    /// The scan times of `seed`'s epoch. Past the epoch's end they go on at the same pace
    /// until the next seed replaces them.
    pub fn of(seed: &EpochSeed) -> Self {
        let slot_ms = (seed.duration_ms / u64::from(seed.params.slot_count.max(1))).max(1);
        let on_air_ms = u64::try_from(BEACON_ON_AIR.as_millis()).unwrap_or(u64::MAX);
        Self {
            start_ms: seed.start_ms,
            slot_ms,
            scan_offset_ms: schedule::beacon_tx_offset_ms(slot_ms) + on_air_ms / 2,
        }
    }

    /// The first scan time strictly after `now_ms` (Unix ms).
    pub fn next_scan_ms(&self, now_ms: u64) -> u64 {
        let first = self.start_ms.saturating_add(self.scan_offset_ms);
        if now_ms < first {
            return first;
        }
        let passed = (now_ms - first) / self.slot_ms + 1;
        first.saturating_add(passed.saturating_mul(self.slot_ms))
    }
}

/// Scans and sends each outcome to `tx`, until the receiver is dropped: once per beacon slot
/// at the time `clock` gives (see [`SlotClock`]; a new one takes effect at once), and while it
/// holds none, every `interval` (the first at once). A scan that overruns the wait delays the
/// next rather than bunching them up.
pub async fn scan_loop(
    mut source: impl ScanSource,
    interval: Duration,
    freqs_mhz: Vec<u32>,
    mut clock: watch::Receiver<Option<SlotClock>>,
    tx: mpsc::Sender<Scan>,
) {
    let mut first = true;
    let mut clock_open = true;
    // The slot time of the last scan: a timer that fires a little before the wall clock gets
    // there must not scan the same slot twice.
    let mut last_ms = 0;
    loop {
        let slots = *clock.borrow_and_update();
        let mut target = None;
        let wait = match slots {
            Some(c) => {
                let now = source.now_ms();
                let at = c.next_scan_ms(now.max(last_ms));
                target = Some(at);
                Duration::from_millis(at - now)
            }
            None if first => Duration::ZERO,
            None => interval,
        };
        if clock_open {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = clock.changed() => {
                    // A new schedule: wait again by it. A closed one (the device is gone)
                    // keeps the last.
                    clock_open = changed.is_ok();
                    continue;
                }
            }
        } else {
            tokio::time::sleep(wait).await;
        }
        first = false;
        last_ms = target.unwrap_or(last_ms);
        let outcome = match source.scan(&freqs_mhz).await {
            Ok(mut entries) => {
                // Both clocks back to back: the ages and the wall time are of one instant.
                let boot = nl80211::boottime_ns();
                let wall_ms = wall_ms();
                if let Ok(boot) = boot {
                    nl80211::rebase_ages(&mut entries, boot);
                }
                Scan::Done { entries, wall_ms }
            }
            Err(e) => Scan::Failed(e),
        };
        if tx.send(outcome).await.is_err() {
            return;
        }
    }
}

/// Drives `led` until the sender of `patterns` is dropped: ticks it at each of its deadlines
/// (tokio time since the start) and switches to each pattern sent. A failing output is logged
/// once per run of failures.
pub async fn led_loop<O: RgbOutput>(mut led: StatusLed<O>, mut patterns: watch::Receiver<Pattern>)
where
    O::Error: std::fmt::Debug,
{
    let origin = tokio::time::Instant::now();
    let mut failing = false;
    loop {
        let now = u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        match led.tick(now) {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!("the status LED failed: {e:?}");
                }
                failing = true;
            }
        }
        let next = led.poll_timeout();
        let wait = async {
            match next {
                Some(t) => tokio::time::sleep_until(origin + Duration::from_millis(t)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = wait => {}
            changed = patterns.changed() => {
                if changed.is_err() {
                    return;
                }
                let pattern = *patterns.borrow_and_update();
                led.set_pattern(pattern);
            }
        }
    }
}

/// What the GNSS reader thread leaves for the daemon.
#[derive(Debug, Default)]
struct GnssMailbox {
    /// The newest fix not yet taken.
    fix: Option<Fix>,
    check: Check,
}

type Shared = Arc<Mutex<GnssMailbox>>;

fn lock(m: &Mutex<GnssMailbox>) -> std::sync::MutexGuard<'_, GnssMailbox> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads NMEA from `port` into the mailbox until the port ends, fails, or the device is gone.
fn read_nmea(mut port: impl Read, mailbox: &Weak<Mutex<GnssMailbox>>, name: &str) {
    let mut parser = NmeaParser::new();
    let mut buf = [0u8; 256];
    let mut read_total = 0usize;
    let mut spoke = false;
    loop {
        let r = port.read(&mut buf);
        let Some(mailbox) = mailbox.upgrade() else {
            return;
        };
        let mut m = lock(&mailbox);
        let n = match r {
            Ok(0) => {
                tracing::warn!(port = name, "the GNSS port closed");
                m.check = Check::Failed;
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(port = name, "reading the GNSS port failed: {e}");
                m.check = Check::Failed;
                return;
            }
        };
        parser.push_each(&buf[..n], |fix| {
            m.fix = Some(fix);
            m.check = Check::Passed;
        });
        let stats = parser.stats();
        read_total = read_total.saturating_add(n);
        if !spoke && stats.sentences_ok > 0 {
            spoke = true;
            tracing::info!(port = name, "the GNSS receiver speaks NMEA");
        } else if !spoke && read_total >= GNSS_GARBAGE_LIMIT && m.check != Check::Failed {
            tracing::warn!(
                port = name,
                checksum_errors = stats.checksum_errors,
                "no valid NMEA sentence in the first {GNSS_GARBAGE_LIMIT} bytes: check device.gnss_baud"
            );
            m.check = Check::Failed;
        }
    }
}

/// Starts the GNSS reader on `port`, a named thread: a tty read blocks, and the daemon's
/// runtime has one thread. It ends at the first read after the device is dropped, or when the
/// port ends.
fn spawn_gnss(port: impl Read + Send + 'static, name: String) -> std::io::Result<Shared> {
    let mailbox = Shared::default();
    let weak = Arc::downgrade(&mailbox);
    std::thread::Builder::new()
        .name("wisp-gnss".into())
        .spawn(move || read_nmea(port, &weak, &name))?;
    Ok(mailbox)
}

/// The router's hardware as the daemon's [`DeviceIo`]. See the [module docs](self).
#[derive(Debug)]
pub struct LinuxDevice {
    radio: Option<LinuxRadio>,
    /// Counts transmissions: a task ending one does nothing once a newer one began.
    transmissions: Arc<AtomicU64>,
    scans: Option<(mpsc::Receiver<Scan>, JoinHandle<()>)>,
    /// The scan task's schedule.
    slot_clock: watch::Sender<Option<SlotClock>>,
    gnss: Option<Shared>,
    secure_element: Option<Atecc608<I2cDev, SleepDelay>>,
    led: Option<(watch::Sender<Pattern>, JoinHandle<()>)>,
    /// The button's sampler and hook tasks, and its line's check.
    button: Option<(Vec<JoinHandle<()>>, LineCheck)>,
    checks: DeviceChecks,
    scan_failures: u64,
}

impl Drop for LinuxDevice {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.scans {
            task.abort();
        }
        if let Some((_, task)) = &self.led {
            task.abort();
        }
        for task in self.button.iter().flat_map(|(t, _)| t) {
            task.abort();
        }
    }
}

/// The interface index of `name` (`/sys/class/net/<name>/ifindex`).
fn if_index(name: &str) -> anyhow::Result<u32> {
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("device.scan_interface: no network interface `{name}`"))?;
    text.trim()
        .parse()
        .with_context(|| format!("{path}: not an interface index"))
}

impl LinuxDevice {
    /// Opens the configured parts: connects to hostapd (it must answer), starts the scan task
    /// on the current tokio runtime, opens the GNSS tty and starts its reader. `radio_freq_khz`
    /// is the declared frequency (`radio.freq_mhz`), compared with the access point's.
    pub fn open(cfg: &LinuxDeviceConfig, radio_freq_khz: u32) -> anyhow::Result<Self> {
        let radio = match &cfg.hostapd_ctrl {
            None => None,
            Some(path) => Some(open_radio(path, radio_freq_khz)?),
        };
        let mut device = Self::with_radio(radio);
        if let Some(scan) = &cfg.scan {
            let index = if_index(&scan.interface)?;
            let scanner = Nl80211Scanner::new(index, scan.ap_mode, SCAN_TIMEOUT)
                .context("device.scan_interface: cannot open the nl80211 sockets")?;
            tracing::info!(
                interface = scan.interface,
                interval_s = scan.interval.as_secs_f64(),
                freqs_mhz = ?scan.freqs_mhz,
                "scanning for beacons"
            );
            device = device.scanning(scanner, scan);
        }
        if let Some(se) = &cfg.secure_element {
            device = device.with_secure_element(se)?;
        }
        if let Some(led) = &cfg.led {
            device = device.with_led(led)?;
        }
        if let Some(b) = &cfg.button {
            device = device.with_button(b)?;
        }
        if let Some(g) = &cfg.gnss {
            let port =
                wisp_firmware::gnss::tty::open(&g.path, g.baud).context("device.gnss_tty")?;
            tracing::info!(tty = %g.path.display(), baud = g.baud, "reading GNSS");
            device = device
                .reading_gnss(port, g.path.display().to_string())
                .context("device.gnss_tty: cannot start the reader thread")?;
        }
        Ok(device)
    }

    /// Only the secure element of `cfg` (none if it has none): what attesting needs, without
    /// hostapd, scans or GNSS (`wisp-agent device`, `onboard`).
    pub fn open_secure_element(cfg: &LinuxDeviceConfig) -> anyhow::Result<Self> {
        let device = Self::with_radio(None);
        match &cfg.secure_element {
            Some(se) => device.with_secure_element(se),
            None => Ok(device),
        }
    }

    /// Adds the status LED on `led`'s lines, driven by a task on the current tokio runtime.
    pub fn with_led(self, led: &LedConfig) -> anyhow::Result<Self> {
        let line = |i: usize| {
            GpioLine::output(&led.chip, led.lines[i], "wisp-agent led").context("device.led_lines")
        };
        let polarity = if led.active_low {
            Polarity::ActiveLow
        } else {
            Polarity::ActiveHigh
        };
        let pins = RgbPins::new(line(0)?, line(1)?, line(2)?, polarity);
        tracing::info!(chip = %led.chip.display(), lines = ?led.lines, "status LED");
        Ok(self.driving_led(StatusLed::new(pins)))
    }

    /// Adds the button on `b`'s line, sampled by a task on the current tokio runtime; each
    /// press runs `b.hook` ([`super::button`]).
    pub fn with_button(self, b: &ButtonConfig) -> anyhow::Result<Self> {
        // Requested as active-high either way: the kernel inverts an active-low line.
        let line = GpioLine::input(
            &b.chip,
            b.line,
            "wisp-agent button",
            !b.active_high,
            !b.active_high,
        )
        .context("device.button_line")?;
        let cfg = wisp_firmware::button::ButtonConfig {
            active: wisp_firmware::button::ActiveLevel::High,
            ..Default::default()
        };
        tracing::info!(chip = %b.chip.display(), line = b.line, hook = ?b.hook, "button");
        Ok(self.with_button_pin(Button::new(line, cfg), b.hook.clone()))
    }

    /// Samples `button` (any input; tests: a simulated pin) and runs `hook` for each press.
    #[must_use]
    pub fn with_button_pin<P>(mut self, button: Button<P>, hook: Option<PathBuf>) -> Self
    where
        P: embedded_hal::digital::InputPin + Send + 'static,
    {
        if let Some((old, _)) = self.button.replace(super::button::spawn(button, hook)) {
            old.iter().for_each(JoinHandle::abort);
        }
        self
    }

    /// Drives `led` (any output; tests: recorded pins) from [`DeviceIo::set_health`], in a task
    /// on the current tokio runtime. It shows the booting pattern until the first health.
    #[must_use]
    pub fn driving_led<O>(mut self, led: StatusLed<O>) -> Self
    where
        O: RgbOutput + Send + 'static,
        O::Error: std::fmt::Debug,
    {
        let (tx, rx) = watch::channel(led.pattern());
        let task = tokio::spawn(led_loop(led, rx));
        if let Some((_, old)) = self.led.replace((tx, task)) {
            old.abort();
        }
        self
    }

    /// Adds the ATECC608 on `se`'s adapter (opened, not yet spoken to: the first attestation
    /// is the check).
    pub fn with_secure_element(mut self, se: &SecureElementConfig) -> anyhow::Result<Self> {
        let bus = I2cDev::open(&se.bus).context("device.se_i2c")?;
        let config = AteccConfig {
            address: se.address,
            ..AteccConfig::default()
        };
        self.secure_element = Some(Atecc608::new(bus, SleepDelay, config));
        Ok(self)
    }

    /// A device with `radio` (connected to hostapd, which answered: the radio check passes)
    /// or none, and no other part yet.
    pub fn with_radio(radio: Option<LinuxRadio>) -> Self {
        let checks = DeviceChecks {
            radio: if radio.is_some() {
                Check::Passed
            } else {
                Check::NotChecked
            },
            ..DeviceChecks::default()
        };
        Self {
            radio,
            transmissions: Arc::new(AtomicU64::new(0)),
            scans: None,
            slot_clock: watch::Sender::new(None),
            gnss: None,
            secure_element: None,
            led: None,
            button: None,
            checks,
            scan_failures: 0,
        }
    }

    /// Receives by scanning `source` at `cfg`'s interval and frequencies, in a task on the
    /// current tokio runtime (panics outside one, like `tokio::spawn`). Scans reach the core
    /// only through the radio: without one they are taken and dropped.
    #[must_use]
    pub fn scanning(mut self, source: impl ScanSource, cfg: &ScanConfig) -> Self {
        let (tx, rx) = mpsc::channel(SCAN_QUEUE);
        let task = tokio::spawn(scan_loop(
            source,
            cfg.interval,
            cfg.freqs_mhz.clone(),
            self.slot_clock.subscribe(),
            tx,
        ));
        if let Some((_, old)) = self.scans.replace((rx, task)) {
            old.abort();
        }
        self
    }

    /// Reads NMEA from `port` (a tty opened by [`wisp_firmware::gnss::tty::open`], or any
    /// byte stream) on a thread; `name` names it in logs.
    pub fn reading_gnss(
        mut self,
        port: impl Read + Send + 'static,
        name: String,
    ) -> std::io::Result<Self> {
        self.gnss = Some(spawn_gnss(port, name)?);
        Ok(self)
    }

    /// Takes the element off air [`BEACON_ON_AIR`] from now, unless another transmission began
    /// by then; on the current tokio runtime, the hostapd exchange on a blocking thread. A
    /// failure is logged: the element then stays until the next beacon replaces it, and late
    /// scans of it would be refused as `witness_lag`.
    fn end_transmission_later(&self, config: LinuxRadioConfig) {
        let this = self.transmissions.fetch_add(1, Ordering::SeqCst) + 1;
        let transmissions = Arc::clone(&self.transmissions);
        tokio::spawn(async move {
            tokio::time::sleep(BEACON_ON_AIR).await;
            if transmissions.load(Ordering::SeqCst) != this {
                return;
            }
            match tokio::task::spawn_blocking(move || end_transmission(&config)).await {
                Ok(Ok(())) => tracing::debug!("beacon off air"),
                Ok(Err(e)) => tracing::warn!("could not take the beacon off air: {e}"),
                Err(e) => tracing::warn!("could not take the beacon off air: {e}"),
            }
        });
    }

    /// Hands waiting scans to the radio.
    fn take_scans(&mut self) {
        let Some((rx, _)) = self.scans.as_mut() else {
            return;
        };
        while let Ok(scan) = rx.try_recv() {
            match scan {
                Scan::Done { entries, wall_ms } => {
                    if self.scan_failures > 0 {
                        tracing::info!(failed = self.scan_failures, "nl80211 scans work again");
                        self.scan_failures = 0;
                    }
                    self.checks.receive = Check::Passed;
                    if let Some(radio) = self.radio.as_mut() {
                        let new = radio.handle_scan(&entries, wall_ms);
                        tracing::debug!(entries = entries.len(), new, "scan");
                    }
                }
                Scan::Failed(why) => {
                    self.checks.receive = Check::Failed;
                    // The first failure of a run says why; the rest would repeat it.
                    if self.scan_failures == 0 {
                        tracing::warn!("nl80211 scan failed: {why}");
                    } else {
                        tracing::debug!("nl80211 scan failed: {why}");
                    }
                    self.scan_failures = self.scan_failures.saturating_add(1);
                }
            }
        }
    }
}

fn open_radio(path: &std::path::Path, radio_freq_khz: u32) -> anyhow::Result<LinuxRadio> {
    let radio = LinuxRadio::new(LinuxRadioConfig::new(path)).with_context(|| {
        format!(
            "device.hostapd_ctrl: hostapd did not answer at {} (is it running, with \
             ctrl_interface set to that directory, and may this user open the socket?)",
            path.display()
        )
    })?;
    let ap = radio.ap_channel().freq_khz;
    if ap / 1_000 != radio_freq_khz / 1_000 {
        tracing::warn!(
            ap_mhz = ap / 1_000,
            declared_mhz = radio_freq_khz / 1_000,
            "the access point is not on radio.freq_mhz: beacons will be refused until they agree"
        );
    }
    tracing::info!(ctrl = %path.display(), ap_mhz = ap / 1_000, "beacons through hostapd");
    Ok(radio)
}

impl DeviceIo for LinuxDevice {
    /// Blocks for at most a few hostapd round trips (1 s each at worst): once per epoch.
    fn transmit(&mut self, frame: &TxFrame) -> Result<(), DeviceError> {
        let Some(radio) = self.radio.as_mut() else {
            return Err(DeviceError::NotSupported("radio"));
        };
        let channel = Channel::new(frame.freq_khz, frame.width_mhz);
        let mut r = radio.transmit(channel, &frame.payload);
        // hostapd restarted (a WiFi reload): its socket is new; connect again, once.
        if matches!(r, Err(LinuxRadioError::Hostapd(_))) && radio.reconnect().is_ok() {
            r = radio.transmit(channel, &frame.payload);
        }
        if r.is_ok() {
            let config = radio.config().clone();
            self.end_transmission_later(config);
        }
        let r = r.map_err(|e| DeviceError::Radio(e.to_string()));
        self.checks.radio = Check::of(&r);
        r
    }

    fn set_epoch(&mut self, seed: &EpochSeed) {
        let clock = SlotClock::of(seed);
        self.slot_clock
            .send_if_modified(|c| c.replace(clock) != Some(clock));
    }

    fn poll_received(&mut self) -> Option<RxFrame> {
        self.take_scans();
        let radio = self.radio.as_mut()?;
        match radio.receive() {
            Ok(Some(f)) => Some(RxFrame::from(&f)),
            Ok(None) => None,
            Err(e) => {
                self.checks.receive = Check::Failed;
                tracing::warn!("radio receive failed: {e}");
                None
            }
        }
    }

    fn poll_fix(&mut self) -> Option<GnssFix> {
        let mut m = lock(self.gnss.as_ref()?);
        m.fix.take().map(|f| gnss_fix(&f, wall_ms()))
    }

    fn health(&self) -> DeviceChecks {
        let mut checks = self.checks;
        if let Some(g) = &self.gnss {
            checks.gnss = lock(g).check;
        }
        if let Some((_, b)) = &self.button {
            checks.button = b.get();
        }
        checks
    }

    fn firmware_version(&self) -> String {
        "linux".into()
    }

    fn set_health(&mut self, health: Health) {
        if let Some((tx, _)) = &self.led {
            let pattern = match health {
                Health::Online => Pattern::Online,
                Health::Degraded => Pattern::Degraded,
                Health::Offline => Pattern::Offline,
            };
            tx.send_if_modified(|p| std::mem::replace(p, pattern) != pattern);
        }
    }

    /// Attests with the key in slot 0. A maker name too long to attest leaves the element's
    /// check as it was: the element was not asked.
    fn attest(
        &mut self,
        node_public_key: &[u8; 32],
        maker: &str,
    ) -> Option<Result<DeviceAttestation, DeviceError>> {
        let se = self.secure_element.as_mut()?;
        let r = match wisp_firmware::se::attest(se, 0, node_public_key, maker) {
            Ok(a) => {
                self.checks.secure_element = Check::Passed;
                Ok((a.serial, a.device_public_key, a.signature))
            }
            Err(AttestError::MakerTooLong(e)) => Err(e.into()),
            Err(AttestError::Device(e)) => {
                self.checks.secure_element = Check::Failed;
                Err(DeviceError::SecureElement(format!("{e:?}")))
            }
        };
        Some(r)
    }
}
