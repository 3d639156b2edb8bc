//! The agent's view of the hotspot hardware: any [`wisp_firmware::device::Device`] bundle (real
//! drivers or the simulated device) adapted to what the daemon needs.
//!
//! Health is what the daemon saw, never assumed: each part's [`Check`] changes only when the
//! part is used (a transmission, a fix, an attestation), and stays not checked until then.

use std::fmt::Debug;
use std::net::SocketAddr;

use wisp_firmware::clock::Clock;
use wisp_firmware::device::{Device, StatusIndicator};
use wisp_firmware::led::Pattern;
use wisp_firmware::radio::{Channel, Radio};
use wisp_firmware::se::{AttestError, MakerTooLong, SecureElement};
use wisp_protocol::msg::GnssFix;
use wisp_protocol::units::DeciDb;

pub mod button;
pub mod linux;

use crate::air::{AirLink, Station};
use crate::config::{Config, DeviceKind};
use crate::core::TxFrame;
use crate::status::{Check, DeviceChecks};
use crate::wallclock::wall_ms;

/// A secure element's attestation: `(serial, device public key x‖y, signature r‖s)`.
pub type DeviceAttestation = ([u8; 9], [u8; 64], [u8; 64]);

/// Why the device did not do what the daemon asked. Drivers' errors are only `Debug`, so their
/// account is kept as that text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The radio failed to transmit; the driver's error.
    #[error("the radio failed to transmit: {0}")]
    Radio(String),
    /// The secure element failed to attest; the driver's error.
    #[error("the secure element failed: {0}")]
    SecureElement(String),
    /// The maker name is too long to be attested (the element was not asked).
    #[error(transparent)]
    MakerTooLong(#[from] MakerTooLong),
    /// The devnet's simulated air could not be sent to.
    #[error("the simulated air at {0} is unreachable")]
    AirUnreachable(SocketAddr),
    /// This device has no such part (a node without a radio).
    #[error("this node has no {0}")]
    NotSupported(&'static str),
}

/// A frame the radio received.
#[derive(Debug, Clone)]
pub struct RxFrame {
    /// The payload (a beacon envelope, if it is ours).
    pub payload: Vec<u8>,
    /// Signal strength.
    pub rssi: DeciDb,
    /// Signal to noise.
    pub snr: DeciDb,
    /// Frequency received on.
    pub freq_khz: u32,
    /// When the radio received it: Unix ms (UTC) on the agent's wall clock, the clock
    /// [`wall_ms`] reads and the daemon hands the core as `now`. This is the firmware's
    /// `RadioFrame::rx_time_ms`, already on that clock (the Linux radio stamps a scan entry
    /// with the scan's wall time minus the entry's age; the simulated device keeps what the
    /// injector stamped), so it is passed through unchanged. It is not the time the daemon
    /// polled the frame, which may be a loop turn later.
    pub rx_ms: u64,
}

impl From<&wisp_firmware::radio::RadioFrame> for RxFrame {
    fn from(f: &wisp_firmware::radio::RadioFrame) -> Self {
        RxFrame {
            payload: f.payload.to_vec(),
            rssi: DeciDb(f.rssi_ddbm),
            snr: DeciDb(f.snr_ddb),
            freq_khz: f.freq_khz,
            rx_ms: f.rx_time_ms,
        }
    }
}

/// What the daemon needs from the hardware. Real boards and the simulator implement it.
pub trait DeviceIo: Send {
    /// Transmits a beacon frame.
    fn transmit(&mut self, frame: &TxFrame) -> Result<(), DeviceError>;
    /// The next received frame, if any.
    fn poll_received(&mut self) -> Option<RxFrame>;
    /// A new GNSS fix, if any.
    fn poll_fix(&mut self) -> Option<GnssFix>;
    /// Each part's last check, for the status.
    fn health(&self) -> DeviceChecks;
    /// Backend name and version, reported in heartbeats.
    fn firmware_version(&self) -> String;
    /// The secure element's attestation of `node_public_key` for `maker`: `(serial, device
    /// public key x‖y, device signature r‖s)`. `None` when the device has no secure element.
    fn attest(
        &mut self,
        node_public_key: &[u8; 32],
        maker: &str,
    ) -> Option<Result<DeviceAttestation, DeviceError>> {
        let _ = (node_public_key, maker);
        None
    }
    /// Shows the agent's health (the status LED).
    fn set_health(&mut self, health: Health) {
        let _ = health;
    }
    /// A new epoch began: a radio that receives by scanning times its scans by its slots.
    fn set_epoch(&mut self, seed: &wisp_protocol::msg::EpochSeed) {
        let _ = seed;
    }
}

/// A node without radio or GNSS hardware (a backhaul-only node, or a test). Transmits fail as
/// not supported; nothing is ever received, and nothing is ever checked.
#[derive(Debug, Default)]
pub struct NoDevice;

impl DeviceIo for NoDevice {
    fn transmit(&mut self, _frame: &TxFrame) -> Result<(), DeviceError> {
        Err(DeviceError::NotSupported("radio"))
    }
    fn poll_received(&mut self) -> Option<RxFrame> {
        None
    }
    fn poll_fix(&mut self) -> Option<GnssFix> {
        None
    }
    fn health(&self) -> DeviceChecks {
        DeviceChecks::default()
    }
    fn firmware_version(&self) -> String {
        "none".into()
    }
}

/// A firmware fix as signed heartbeats carry it. Without a date (a receiver sending GGA only)
/// the fix time is `wall_ms`, the device's clock when the fix was taken from it.
pub(crate) fn gnss_fix(f: &wisp_firmware::gnss::Fix, wall_ms: u64) -> GnssFix {
    GnssFix {
        lat_e7: f.lat_e7,
        lon_e7: f.lon_e7,
        alt_mm: f.alt_mm,
        hdop_centi: f.hdop_centi,
        satellites: f.satellites,
        utc_ms: f.utc.unix_ms().unwrap_or(wall_ms),
    }
}

/// What the LED should show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Connected, acks arriving.
    Online,
    /// Connected, but no ack for a while.
    Degraded,
    /// No broker connection.
    Offline,
}

/// A firmware device as the daemon's [`DeviceIo`].
#[derive(Debug)]
pub struct Board<D> {
    dev: D,
    name: String,
    fix: Option<GnssFix>,
    checks: DeviceChecks,
}

impl<D: Device> Board<D> {
    /// Wraps a device; `name` is reported as the firmware version.
    pub fn new(dev: D, name: impl Into<String>) -> Self {
        Self {
            dev,
            name: name.into(),
            fix: None,
            checks: DeviceChecks::default(),
        }
    }

    /// The device.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.dev
    }
}

impl<D> DeviceIo for Board<D>
where
    D: Device + Send,
    <D::Radio as Radio>::Error: Debug,
    <<D as Device>::Led as StatusIndicator>::Error: Debug,
    <D::SecureElement as SecureElement>::Error: Debug,
{
    fn transmit(&mut self, frame: &TxFrame) -> Result<(), DeviceError> {
        let r = self
            .dev
            .radio()
            .transmit(
                Channel::new(frame.freq_khz, frame.width_mhz),
                &frame.payload,
            )
            .map_err(|e| DeviceError::Radio(format!("{e:?}")));
        self.checks.radio = Check::of(&r);
        r
    }

    fn poll_received(&mut self) -> Option<RxFrame> {
        match self.dev.radio().receive() {
            Ok(Some(f)) => Some(RxFrame::from(&f)),
            Ok(None) => None,
            Err(e) => {
                self.checks.radio = Check::Failed;
                tracing::warn!("radio receive failed: {e:?}");
                None
            }
        }
    }

    fn poll_fix(&mut self) -> Option<GnssFix> {
        let polled = self.dev.poll();
        match polled.fix {
            Ok(Some(f)) => {
                self.checks.gnss = Check::Passed;
                let fix = gnss_fix(&f, self.dev.clock().wall_ms());
                self.fix = Some(fix);
                Some(fix)
            }
            Ok(None) => None,
            Err(_) => {
                self.checks.gnss = Check::Failed;
                None
            }
        }
    }

    fn health(&self) -> DeviceChecks {
        self.checks
    }

    fn firmware_version(&self) -> String {
        self.name.clone()
    }

    /// Attests with the key in slot 0. A maker name too long to attest leaves the element's
    /// check as it was: the element was not asked.
    fn attest(
        &mut self,
        node_public_key: &[u8; 32],
        maker: &str,
    ) -> Option<Result<DeviceAttestation, DeviceError>> {
        let r =
            match wisp_firmware::se::attest(self.dev.secure_element(), 0, node_public_key, maker) {
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

    fn set_health(&mut self, h: Health) {
        let p = match h {
            Health::Online => Pattern::Online,
            Health::Degraded => Pattern::Degraded,
            Health::Offline => Pattern::Offline,
        };
        if self.dev.led().pattern() != p {
            self.dev.led().set_pattern(p);
        }
    }
}

/// The simulated device, its clock following the system clock, at an optional position; with
/// an [`AirLink`], on the devnet's shared simulated air (what it transmits reaches the others
/// in range, and what they transmit reaches it), else alone (what it transmits goes nowhere).
#[derive(Debug)]
pub struct SimBoard {
    board: Board<wisp_firmware::device::SimDevice>,
    origin: std::time::Instant,
    air: Option<AirLink>,
}

impl SimBoard {
    /// A simulated device whose GNSS reports `position` (1e-7 degrees).
    pub fn new(node_seed: &[u8; 32], position: Option<(i32, i32)>) -> anyhow::Result<Self> {
        // The soft secure element's key is derived from, not equal to, the node key.
        let se_secret = *blake3::Hasher::new_derive_key("wisp-agent sim secure element")
            .update(node_seed)
            .finalize()
            .as_bytes();
        let mut serial = [0u8; 9];
        serial.copy_from_slice(&se_secret[..9]);
        let mut dev = wisp_firmware::device::simulated(&se_secret, serial)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        dev.set_position(
            position.map(|(lat_e7, lon_e7)| wisp_firmware::device::SimPosition {
                lat_e7,
                lon_e7,
                alt_mm: 50_000,
                hdop_centi: 90,
                satellites: 9,
            }),
        );
        Ok(Self {
            board: Board::new(dev, "sim"),
            origin: std::time::Instant::now(),
            air: None,
        })
    }

    /// Puts the device on a shared simulated air.
    #[must_use]
    pub fn with_air(mut self, air: AirLink) -> Self {
        self.air = Some(air);
        self
    }

    fn sync_clock(&mut self) {
        let mono = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.board.device_mut().set_time(mono, wall_ms());
    }

    /// Takes what the air delivered into the radio's receive queue, with the time each
    /// arrived (the time a driver would give the frame).
    fn listen(&mut self) {
        let Some(air) = self.air.as_mut() else {
            return;
        };
        air.keepalive(std::time::Instant::now());
        let heard = air.receive();
        if heard.is_empty() {
            return;
        }
        self.sync_clock();
        for h in heard {
            let Ok(payload) = wisp_firmware::radio::Payload::from_slice(&h.payload) else {
                continue;
            };
            self.board
                .device_mut()
                .inject_frame(wisp_firmware::radio::RadioFrame {
                    payload,
                    rssi_ddbm: h.rssi_ddbm,
                    snr_ddb: h.snr_ddb,
                    freq_khz: h.freq_khz,
                    rx_time_ms: h.rx_ms,
                });
        }
    }
}

impl DeviceIo for SimBoard {
    fn transmit(&mut self, frame: &TxFrame) -> Result<(), DeviceError> {
        self.sync_clock();
        let r = self.board.transmit(frame);
        let sent: Vec<_> = self.board.device_mut().drain_transmitted().collect();
        if let Some(air) = self.air.as_mut() {
            for t in sent {
                if !air.transmit(t.channel.freq_khz, t.channel.width_mhz, &t.payload) {
                    return Err(DeviceError::AirUnreachable(air.air()));
                }
            }
        }
        // Without an air, nobody else is on it: what we sent goes nowhere.
        r
    }
    fn poll_received(&mut self) -> Option<RxFrame> {
        self.listen();
        self.board.poll_received()
    }
    fn poll_fix(&mut self) -> Option<GnssFix> {
        self.sync_clock();
        self.board.poll_fix()
    }
    fn health(&self) -> DeviceChecks {
        self.board.health()
    }
    fn firmware_version(&self) -> String {
        self.board.firmware_version()
    }
    fn set_health(&mut self, h: Health) {
        self.board.set_health(h);
    }
    fn attest(
        &mut self,
        node_public_key: &[u8; 32],
        maker: &str,
    ) -> Option<Result<DeviceAttestation, DeviceError>> {
        self.board.attest(node_public_key, maker)
    }
}

/// What attesting needs of the configured backend: on `linux`, only the secure element (no
/// hostapd, scans or GNSS); on the others, [`open`].
pub fn open_for_attestation(
    cfg: &Config,
    key: &wisp_protocol::NodeKey,
) -> anyhow::Result<Box<dyn DeviceIo>> {
    match (&cfg.device, &cfg.linux) {
        (DeviceKind::Linux, Some(linux)) => {
            Ok(Box::new(linux::LinuxDevice::open_secure_element(linux)?))
        }
        _ => open(cfg, key),
    }
}

/// The configured hardware backend (`device.kind`), for `key`.
pub fn open(cfg: &Config, key: &wisp_protocol::NodeKey) -> anyhow::Result<Box<dyn DeviceIo>> {
    Ok(match cfg.device {
        DeviceKind::None => Box::new(NoDevice),
        DeviceKind::Linux => {
            let linux = cfg
                .linux
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("device.kind = \"linux\" without its keys"))?;
            Box::new(linux::LinuxDevice::open(linux, cfg.radio.freq_khz)?)
        }
        DeviceKind::Sim => {
            // Degrees × 1e7 of a valid cell centre fit an i32.
            #[allow(clippy::cast_possible_truncation)]
            let position = cfg
                .sim_position
                .or_else(|| cfg.cell.map(|c| c.center()))
                .map(|(lat, lon)| ((lat * 1e7).round() as i32, (lon * 1e7).round() as i32));
            // A spoofed receiver reports its own fix; the radio stays where the device is.
            #[allow(clippy::cast_possible_truncation)]
            let fix = cfg
                .sim_gnss_spoof
                .map(|(lat, lon)| ((lat * 1e7).round() as i32, (lon * 1e7).round() as i32))
                .or(position);
            let board = SimBoard::new(&key.seed(), fix)?;
            match (cfg.sim_air, position) {
                (Some(air), Some((lat_e7, lon_e7))) => {
                    let station = Station {
                        lat_e7,
                        lon_e7,
                        tx_power_ddbm: cfg.radio.tx_power.0,
                        gain_ddbi: cfg.radio.antenna_gain.0,
                    };
                    let link =
                        anyhow::Context::with_context(AirLink::connect(air, station), || {
                            format!("device.air: cannot open a socket to {air}")
                        })?;
                    tracing::info!(%air, "simulated device on the shared air");
                    Box::new(board.with_air(link))
                }
                (Some(_), None) => {
                    anyhow::bail!("device.air needs a place: set node location or device.position")
                }
                (None, _) => Box::new(board),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use wisp_firmware::radio::{Payload, RadioFrame};
    use wisp_protocol::envelope::{self, Envelope};
    use wisp_protocol::msg::{Beacon, EpochParams, EpochSeed, Versions, Witness};
    use wisp_protocol::{Cell, NodeKey, schedule};

    use super::*;
    use crate::core::{Core, CoreConfig};

    const T0: u64 = 1_800_000_000_000;

    fn frame(len: usize) -> TxFrame {
        TxFrame {
            payload: vec![7; len],
            freq_khz: 2_412_000,
            width_mhz: 20,
        }
    }

    #[test]
    fn health_says_only_what_was_checked() {
        use crate::status::{DeviceChecks, DeviceStatus};
        let checks = |gnss, radio, secure_element| DeviceChecks {
            gnss,
            radio,
            secure_element,
            receive: Check::NotChecked,
            button: Check::NotChecked,
        };
        let mut board = SimBoard::new(&[2; 32], Some((387_000_000, -91_000_000))).unwrap();
        // Nothing used yet: nothing checked, nothing ok on the wire.
        assert_eq!(board.health(), DeviceChecks::default());
        let wire = board.health().health();
        assert!(!wire.gnss_ok && !wire.radio_ok && !wire.secure_element_ok);

        board.transmit(&frame(100)).unwrap();
        assert_eq!(board.health().radio, Check::Passed);
        let too_long = board.transmit(&frame(300)).unwrap_err();
        assert!(matches!(too_long, DeviceError::Radio(_)), "{too_long:?}");
        assert_eq!(board.health().radio, Check::Failed);

        assert!(board.poll_fix().is_some());
        assert_eq!(board.health().gnss, Check::Passed);

        let node = NodeKey::from_seed(&[2; 32]).id();
        // A maker name too long to attest is refused before the element is asked: not checked.
        let maker = "m".repeat(300);
        let refused = board.attest(node.as_bytes(), &maker).unwrap().unwrap_err();
        assert!(
            matches!(refused, DeviceError::MakerTooLong(_)),
            "{refused:?}"
        );
        assert_eq!(board.health().secure_element, Check::NotChecked);
        board.attest(node.as_bytes(), "acme").unwrap().unwrap();
        assert_eq!(
            board.health(),
            checks(Check::Passed, Check::Failed, Check::Passed)
        );

        // `/status` shows the checks and, as the signed report does, ok only where one passed.
        let status = DeviceStatus::from(board.health());
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({
                "gnss_ok": true,
                "radio_ok": false,
                "secure_element_ok": true,
                "checks": {
                    "gnss": "passed",
                    "radio": "failed",
                    "secure_element": "passed",
                    "receive": "not_checked",
                    "button": "not_checked",
                },
            })
        );
        let wire = board.health().health();
        assert!(wire.gnss_ok && !wire.radio_ok && wire.secure_element_ok);
    }

    #[test]
    fn a_node_without_a_device_checks_nothing_and_says_so() {
        let mut none = NoDevice;
        let e = none.transmit(&frame(100)).unwrap_err();
        assert_eq!(e, DeviceError::NotSupported("radio"));
        assert_eq!(e.to_string(), "this node has no radio");
        assert!(none.attest(&[0; 32], "acme").is_none());
        assert_eq!(none.health(), crate::status::DeviceChecks::default());
    }

    #[test]
    fn a_received_frame_keeps_the_radios_time_through_to_the_witness() {
        let oracle = NodeKey::from_seed(&[100; 32]);
        let beaconer = NodeKey::from_seed(&[1; 32]);
        let seed = EpochSeed {
            epoch: 1,
            start_ms: T0,
            duration_ms: 60_000,
            seed: [1; 32].into(),
            params: EpochParams {
                slot_count: 10,
                ..EpochParams::default()
            },
        };
        let cell = Cell::from_degrees(38.7, -9.1, 12).unwrap();
        let mut core = Core::new(
            NodeKey::from_seed(&[2; 32]),
            CoreConfig::new(Some(cell), Versions::new("t", "sim")),
            oracle.id(),
            T0,
            0,
        );
        core.handle_seed(&Envelope::sign(&oracle, &seed).to_bytes(), T0)
            .unwrap();
        let (start, _) = schedule::beacon_window(&seed, &beaconer.id());
        let beacon = Beacon {
            epoch: 1,
            nonce: schedule::beacon_nonce(&seed.seed.0, &beaconer.id()).into(),
            freq_khz: 2_412_000,
            width_mhz: 20,
            tx_power: DeciDb(200),
            antenna_gain: DeciDb(30),
            cell,
            tx_ms: start + 100,
        };
        let bytes = Envelope::sign(&beaconer, &beacon).to_bytes();

        // The firmware hears the beacon at `heard`; the daemon polls it a loop turn later.
        let heard = beacon.tx_ms + 40;
        let mut board = SimBoard::new(&[2; 32], None).unwrap();
        assert!(board.board.device_mut().inject_frame(RadioFrame {
            payload: Payload::from_slice(&bytes).unwrap(),
            rssi_ddbm: -700,
            snr_ddb: 100,
            freq_khz: 2_412_000,
            rx_time_ms: heard,
        }));
        let f = board.poll_received().unwrap();
        assert!(board.poll_received().is_none());
        assert_eq!(f.rx_ms, heard);
        assert_eq!(
            (f.rssi, f.snr, f.freq_khz),
            (DeciDb(-700), DeciDb(100), 2_412_000)
        );

        let held = core
            .handle_radio_frame(&f.payload, f.rssi, f.snr, f.freq_khz, f.rx_ms, heard + 900)
            .unwrap();
        // Signed when this node's own beacon goes out, if not at once.
        let mut t = heard + 900;
        let proof = loop {
            if let Some(p) = std::iter::from_fn(|| core.poll_proof()).find(|p| {
                held.is_none_or(|id| p.id == id) && p.kind == wisp_protocol::Kind::Witness
            }) {
                break p;
            }
            t += 100;
            assert!(t < heard + 120_000, "no witness");
            core.handle_timeout(t);
        };
        assert_eq!(
            envelope::open::<Witness>(&proof.bytes).unwrap().msg.rx_ms,
            heard
        );
    }
}
