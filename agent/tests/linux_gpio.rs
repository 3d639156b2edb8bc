//! `device.kind = "linux"`, its GPIO parts with pins the test drives (this machine has no GPIO
//! chip): the status LED follows the daemon's health at its own pace, and the button's presses
//! reach the operator's hook and its line's reads the device's health.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use wisp_agent::device::button::SharedPin;
use wisp_agent::device::linux::LinuxDevice;
use wisp_agent::device::{DeviceIo, Health};
use wisp_agent::status::Check;
use wisp_firmware::button::{ActiveLevel, Button, ButtonConfig};

/// A GPIO line that records each level written, with the (paused) tokio time.
struct RecordedPin(usize, Arc<Mutex<Vec<(Instant, usize, bool)>>>);

impl embedded_hal::digital::ErrorType for RecordedPin {
    type Error = std::convert::Infallible;
}

impl embedded_hal::digital::OutputPin for RecordedPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.1.lock().unwrap().push((Instant::now(), self.0, false));
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.1.lock().unwrap().push((Instant::now(), self.0, true));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_status_led_follows_health_at_its_own_pace() {
    use wisp_firmware::led::{Polarity, RgbPins, StatusLed};
    let log = Arc::new(Mutex::new(Vec::new()));
    let pin = |i| RecordedPin(i, Arc::clone(&log));
    let pins = RgbPins::new(pin(0), pin(1), pin(2), Polarity::ActiveHigh);
    let mut device = LinuxDevice::with_radio(None).driving_led(StatusLed::new(pins));
    let lit = || {
        let mut rgb = [false; 3];
        for &(_, i, level) in log.lock().unwrap().iter() {
            rgb[i] = level;
        }
        rgb
    };
    let writes = || log.lock().unwrap().len();
    let sleep = |ms| tokio::time::sleep(Duration::from_millis(ms));

    sleep(50).await;
    assert!(writes() > 0, "booting is shown at once");
    device.set_health(Health::Online);
    sleep(50).await;
    assert_eq!(lit(), [false, true, false], "solid green");
    // Solid: nothing to do until the health changes (no polling while it stays).
    let n = writes();
    device.set_health(Health::Online);
    sleep(60_000).await;
    assert_eq!(writes(), n);

    // Degraded: amber, 1 s on, 1 s off.
    device.set_health(Health::Degraded);
    let at = |ms| tokio::time::sleep_until(Instant::now() + Duration::from_millis(ms));
    at(500).await;
    assert!(lit()[0], "on");
    at(1_000).await;
    assert!(!lit()[0], "off after a second");
    at(1_000).await;
    assert!(lit()[0], "on again");
    device.set_health(Health::Offline);
    sleep(50).await;
    assert_eq!(lit(), [true, false, false], "solid red");

    // The device gone, the task stops writing.
    drop(device);
    let n = writes();
    sleep(10_000).await;
    assert_eq!(writes(), n);

    // No GPIO chip here: a file that is not one refuses the lines, and the error says which.
    let e = LinuxDevice::with_radio(None)
        .with_led(&wisp_agent::config::LedConfig {
            chip: PathBuf::from("/dev/null"),
            lines: [4, 5, 6],
            active_low: false,
        })
        .unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains("device.led_lines") && text.contains("line 4 of /dev/null"),
        "{text}"
    );
}

/// The device samples its button: the line's reads pass its check, and a press and a 3 s hold
/// run the hook, a real program, with `short` and `long`. No GPIO chip here: a file that is
/// not one refuses the line, and the error names the key.
#[tokio::test]
async fn the_button_runs_the_hook_for_each_press_and_its_reads_are_its_health() {
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
    let pin = SharedPin::default();
    let cfg = ButtonConfig {
        active: ActiveLevel::High,
        ..ButtonConfig::default()
    };
    let device =
        LinuxDevice::with_radio(None).with_button_pin(Button::new(pin.clone(), cfg), Some(hook));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(device.health().button, Check::Passed, "the line was read");

    let presses = || std::fs::read_to_string(&log).unwrap_or_default();
    pin.press(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    pin.press(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    pin.press(true);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    pin.press(false);
    tokio::time::timeout(Duration::from_secs(30), async {
        while presses().lines().count() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the hook was not run for both presses");
    assert_eq!(presses(), "short\nlong\n");

    let e = LinuxDevice::with_radio(None)
        .with_button(&wisp_agent::config::ButtonConfig {
            chip: PathBuf::from("/dev/null"),
            line: 17,
            active_high: false,
            hook: None,
        })
        .unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains("device.button_line") && text.contains("line 17 of /dev/null"),
        "{text}"
    );
}
