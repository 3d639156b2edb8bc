//! The device bundle the agent takes.
//!
//! [`Device`] names the six parts of a hotspot as associated types, so the agent is generic
//! over one parameter and runs unchanged on real hardware ([`Hardware`], built from the
//! drivers in this crate) and in the simulator (`SimDevice`, feature `sim`).
//!
//! The agent's loop calls [`Device::poll`] (LED tick, button sample, GNSS input) whenever
//! [`Device::poll_timeout`] passes, a timer of 10–20 ms fires (the button needs sampling while
//! pressed), or input arrives. Nothing in it blocks or sleeps.

use crate::button::{Button, ButtonEvent};
use crate::clock::Clock;
use crate::gnss::{Fix, PositionSource};
use crate::led::{self, Pattern, RgbOutput, StatusLed};
use crate::radio::Radio;
use crate::se::SecureElement;

#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "sim")]
pub use sim::{SimDevice, SimGnss, SimPin, SimPosition, SimRadio, Transmission, simulated};

/// A status display: shows one [`Pattern`], advanced by `tick`.
pub trait StatusIndicator {
    /// The output's error.
    type Error;
    /// Switches pattern (no restart if unchanged).
    fn set_pattern(&mut self, pattern: Pattern);
    /// The current pattern.
    fn pattern(&self) -> Pattern;
    /// Advances to `now_ms`.
    fn tick(&mut self, now_ms: u64) -> Result<(), Self::Error>;
    /// When the display next changes.
    fn poll_timeout(&self) -> Option<u64>;
}

impl<O: RgbOutput> StatusIndicator for StatusLed<O> {
    type Error = led::Error<O::Error>;

    fn set_pattern(&mut self, pattern: Pattern) {
        StatusLed::set_pattern(self, pattern);
    }

    fn pattern(&self) -> Pattern {
        StatusLed::pattern(self)
    }

    fn tick(&mut self, now_ms: u64) -> Result<(), Self::Error> {
        StatusLed::tick(self, now_ms)
    }

    fn poll_timeout(&self) -> Option<u64> {
        StatusLed::poll_timeout(self)
    }
}

/// A push button sampled by `poll`.
pub trait PushButton {
    /// The pin's error.
    type Error;
    /// Samples at `now_ms`; returns a completed event.
    fn poll(&mut self, now_ms: u64) -> Result<Option<ButtonEvent>, Self::Error>;
    /// The debounced state.
    fn is_pressed(&self) -> bool;
    /// When the next sample is needed to make progress (debounce end, threshold).
    fn poll_timeout(&self) -> Option<u64>;
}

impl<P: embedded_hal::digital::InputPin> PushButton for Button<P> {
    type Error = crate::button::Error<P::Error>;

    fn poll(&mut self, now_ms: u64) -> Result<Option<ButtonEvent>, Self::Error> {
        Button::poll(self, now_ms)
    }

    fn is_pressed(&self) -> bool {
        Button::is_pressed(self)
    }

    fn poll_timeout(&self) -> Option<u64> {
        Button::poll_timeout(self)
    }
}

/// What one [`Device::poll`] saw. Each part is polled even if another failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled<LE, BE, GE> {
    /// The monotonic time the poll used.
    pub now_ms: u64,
    /// The LED tick.
    pub led: Result<(), LE>,
    /// A completed button event.
    pub button: Result<Option<ButtonEvent>, BE>,
    /// The newest GNSS fix completed by this poll's input.
    pub fix: Result<Option<Fix>, GE>,
}

/// The result type of [`Device::poll`] for device `D`.
pub type DevicePoll<D> = Polled<
    <<D as Device>::Led as StatusIndicator>::Error,
    <<D as Device>::Button as PushButton>::Error,
    <<D as Device>::Gnss as PositionSource>::Error,
>;

/// A hotspot's hardware, as the agent sees it.
pub trait Device {
    /// The status LED.
    type Led: StatusIndicator;
    /// The button.
    type Button: PushButton;
    /// The GNSS receiver.
    type Gnss: PositionSource;
    /// The secure element.
    type SecureElement: SecureElement;
    /// The beacon radio.
    type Radio: Radio;
    /// The clock.
    type Clock: Clock;

    /// The status LED.
    fn led(&mut self) -> &mut Self::Led;
    /// The button.
    fn button(&mut self) -> &mut Self::Button;
    /// The GNSS receiver.
    fn gnss(&mut self) -> &mut Self::Gnss;
    /// The secure element.
    fn secure_element(&mut self) -> &mut Self::SecureElement;
    /// The beacon radio.
    fn radio(&mut self) -> &mut Self::Radio;
    /// The clock.
    fn clock(&self) -> &Self::Clock;

    /// Ticks the LED, samples the button and reads GNSS input, at the clock's monotonic time.
    fn poll(&mut self) -> DevicePoll<Self>
    where
        Self: Sized,
    {
        let now_ms = self.clock().monotonic_ms();
        let led = self.led().tick(now_ms);
        let button = self.button().poll(now_ms);
        let fix = self.gnss().poll_fix();
        Polled {
            now_ms,
            led,
            button,
            fix,
        }
    }

    /// The earliest monotonic time at which [`Device::poll`] has LED or button work to do.
    /// GNSS input and button presses arrive on their own; poll on them too.
    fn poll_timeout(&mut self) -> Option<u64> {
        let led = self.led().poll_timeout();
        let button = self.button().poll_timeout();
        match (led, button) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A device assembled from drivers: the usual way to build one on real hardware.
#[derive(Debug)]
pub struct Hardware<L, B, G, S, R, C> {
    /// The status LED, e.g. `StatusLed<RgbPins<…>>`.
    pub led: L,
    /// The button, e.g. `Button<…>`.
    pub button: B,
    /// The GNSS receiver, e.g. `Gnss<…>`.
    pub gnss: G,
    /// The secure element, e.g. `Atecc608<…>`.
    pub secure_element: S,
    /// The beacon radio.
    pub radio: R,
    /// The clock.
    pub clock: C,
}

impl<L, B, G, S, R, C> Device for Hardware<L, B, G, S, R, C>
where
    L: StatusIndicator,
    B: PushButton,
    G: PositionSource,
    S: SecureElement,
    R: Radio,
    C: Clock,
{
    type Led = L;
    type Button = B;
    type Gnss = G;
    type SecureElement = S;
    type Radio = R;
    type Clock = C;

    fn led(&mut self) -> &mut L {
        &mut self.led
    }

    fn button(&mut self) -> &mut B {
        &mut self.button
    }

    fn gnss(&mut self) -> &mut G {
        &mut self.gnss
    }

    fn secure_element(&mut self) -> &mut S {
        &mut self.secure_element
    }

    fn radio(&mut self) -> &mut R {
        &mut self.radio
    }

    fn clock(&self) -> &C {
        &self.clock
    }
}
