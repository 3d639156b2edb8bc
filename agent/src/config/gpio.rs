//! Resolving the GPIO parts of `device.kind = "linux"`: the status LED and the button.

use super::resolve::{invalid, number_list};
use super::{ButtonConfig, ConfigError, LedConfig, RawDevice};

pub(super) fn resolve_led(raw: &RawDevice) -> Result<Option<LedConfig>, ConfigError> {
    let (chip, lines) = match (&raw.led_gpiochip, &raw.led_lines) {
        (None, None) => {
            if raw.led_active_low.is_some() {
                return Err(invalid(
                    "device.led_active_low",
                    "needs device.led_gpiochip",
                ));
            }
            return Ok(None);
        }
        (Some(chip), Some(lines)) => (chip, lines),
        _ => {
            return Err(invalid(
                "device.led_gpiochip",
                "set device.led_gpiochip and device.led_lines together",
            ));
        }
    };
    if chip.as_os_str().is_empty() {
        return Err(invalid(
            "device.led_gpiochip",
            "a path, e.g. /dev/gpiochip0",
        ));
    }
    let lines = number_list("device.led_lines", lines, "a GPIO line offset")?;
    let lines: [u32; 3] = lines.try_into().map_err(|_| {
        invalid(
            "device.led_lines",
            "three line offsets, red, green and blue, e.g. [4, 5, 6]",
        )
    })?;
    Ok(Some(LedConfig {
        chip: chip.clone(),
        lines,
        active_low: raw.led_active_low.unwrap_or(false),
    }))
}

/// `device.button_*`: the line, and the hook that is run for each press.
pub(super) fn resolve_button(raw: &RawDevice) -> Result<Option<ButtonConfig>, ConfigError> {
    let (chip, line) = match (&raw.button_gpiochip, raw.button_line) {
        (None, None) => {
            let stray = [
                (
                    "device.button_active_high",
                    raw.button_active_high.is_some(),
                ),
                ("device.button_hook", raw.button_hook.is_some()),
            ];
            if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(invalid(key, "needs device.button_gpiochip"));
            }
            return Ok(None);
        }
        (Some(chip), Some(line)) => (chip, line),
        _ => {
            return Err(invalid(
                "device.button_gpiochip",
                "set device.button_gpiochip and device.button_line together",
            ));
        }
    };
    if chip.as_os_str().is_empty() {
        return Err(invalid(
            "device.button_gpiochip",
            "a path, e.g. /dev/gpiochip0",
        ));
    }
    let hook = match &raw.button_hook {
        Some(h) if h.as_os_str().is_empty() => {
            return Err(invalid(
                "device.button_hook",
                "a program, e.g. /etc/wisp/button.sh",
            ));
        }
        h => h.clone(),
    };
    Ok(Some(ButtonConfig {
        chip: chip.clone(),
        line,
        active_high: raw.button_active_high.unwrap_or(false),
        hook,
    }))
}
