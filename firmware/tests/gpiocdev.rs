//! GPIO lines without a GPIO chip (this machine has none): the uAPI layouts, opening, and the
//! request refused by a file that is not a chip.
#![cfg(feature = "linux")]
#![allow(clippy::unwrap_used)]

use nix::errno::Errno;
use wisp_firmware::gpiocdev::{self, GpioError, GpioLine};

#[test]
fn the_structures_have_the_kernels_sizes() {
    // sizeof(struct gpio_v2_line_request) and sizeof(struct gpio_v2_line_values) in
    // linux/gpio.h; the ioctl numbers encode them, so a wrong layout is refused as ENOTTY.
    assert_eq!(gpiocdev::uapi_sizes(), (592, 16));
}

#[test]
fn requests_name_the_chip_and_line_when_refused() {
    let e = GpioLine::output("/dev/gpiochip99".as_ref(), 3, "wisp-led").unwrap_err();
    assert!(matches!(e, GpioError::Open { .. }), "{e}");
    assert!(e.to_string().contains("/dev/gpiochip99"), "{e}");
    let e = GpioLine::input("/dev/null".as_ref(), 7, "wisp-button", true, true).unwrap_err();
    assert!(
        matches!(
            e,
            GpioError::Request {
                offset: 7,
                errno: Errno::ENOTTY,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("line 7 of /dev/null"), "{e}");
}
