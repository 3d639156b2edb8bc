//! The RGB status LED.
//!
//! [`StatusLed`] shows one [`Pattern`] at a time. It is a non-blocking state machine: the owner
//! calls [`StatusLed::tick`] with the current time (from any loop, timer or simulated clock) and
//! the LED writes its outputs only when the visible colour changes. [`StatusLed::poll_timeout`]
//! says when the next change is due, so an event loop can sleep until then instead of polling.
//!
//! The outputs are behind [`RgbOutput`], implemented for three GPIOs ([`RgbPins`], on/off) and
//! three PWM channels ([`RgbPwm`], 8-bit brightness). Both skip writes to channels whose level
//! did not change, which keeps an I²C GPIO expander's bus quiet.

use embedded_hal::digital::OutputPin;
use embedded_hal::pwm::SetDutyCycle;

/// An 8-bit-per-channel colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rgb {
    /// Red, 0..=255.
    pub r: u8,
    /// Green, 0..=255.
    pub g: u8,
    /// Blue, 0..=255.
    pub b: u8,
}

impl Rgb {
    /// All channels off.
    pub const OFF: Rgb = Rgb::new(0, 0, 0);

    /// A colour from its three channels.
    pub const fn new(r: u8, g: u8, b: u8) -> Self {
        Self { r, g, b }
    }

    /// This colour at `level`/255 of its brightness.
    pub fn scaled(self, level: u8) -> Self {
        let scale = |c: u8| {
            let v = u16::from(c) * u16::from(level) / 255;
            u8::try_from(v).unwrap_or(u8::MAX)
        };
        Self::new(scale(self.r), scale(self.g), scale(self.b))
    }
}

/// How a pattern's colour varies over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timing {
    /// Always on.
    Solid,
    /// On for `on_ms`, then off for `off_ms`, repeating, starting with on.
    Blink {
        /// Milliseconds on.
        on_ms: u32,
        /// Milliseconds off.
        off_ms: u32,
    },
    /// Brightness ramps linearly from off to full and back within `period_ms`, starting off.
    Breathe {
        /// Milliseconds per full off → on → off cycle.
        period_ms: u32,
    },
}

/// A colour and its timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PatternSpec {
    /// The colour at full brightness.
    pub color: Rgb,
    /// How it varies over time.
    pub timing: Timing,
}

/// What the hotspot tells its owner through the LED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Pattern {
    /// Starting up: white, breathing (2 s).
    #[default]
    Booting,
    /// Connected and acknowledged by the oracle: solid green.
    Online,
    /// Running, but the oracle has not acknowledged anything for a while: amber, slow blink (1 s on, 1 s off).
    Degraded,
    /// No connection to the broker or peers: solid red.
    Offline,
    /// A fault needs attention (bad key file, hardware failure): red, fast blink (200 ms).
    Error,
    /// Pairing mode after a long button press: blue, blink (500 ms).
    Pairing,
}

impl Pattern {
    /// Every pattern, for tables and tests.
    pub const ALL: [Pattern; 6] = [
        Pattern::Booting,
        Pattern::Online,
        Pattern::Degraded,
        Pattern::Offline,
        Pattern::Error,
        Pattern::Pairing,
    ];

    /// The colour and timing of this pattern.
    pub const fn spec(self) -> PatternSpec {
        // Offline is solid and Error blinks fast so the two red states stay distinguishable,
        // also to colour-blind owners who only see "on" versus "flashing".
        let (color, timing) = match self {
            Pattern::Booting => (
                Rgb::new(255, 255, 255),
                Timing::Breathe { period_ms: 2_000 },
            ),
            Pattern::Online => (Rgb::new(0, 255, 0), Timing::Solid),
            Pattern::Degraded => (
                Rgb::new(255, 128, 0),
                Timing::Blink {
                    on_ms: 1_000,
                    off_ms: 1_000,
                },
            ),
            Pattern::Offline => (Rgb::new(255, 0, 0), Timing::Solid),
            Pattern::Error => (
                Rgb::new(255, 0, 0),
                Timing::Blink {
                    on_ms: 200,
                    off_ms: 200,
                },
            ),
            Pattern::Pairing => (
                Rgb::new(0, 0, 255),
                Timing::Blink {
                    on_ms: 500,
                    off_ms: 500,
                },
            ),
        };
        PatternSpec { color, timing }
    }
}

/// How often a breathing pattern recomputes its brightness. 20 ms (50 Hz) looks smooth.
pub const BREATHE_STEP_MS: u64 = 20;

/// What a colour at time `elapsed_ms` into the pattern looks like, and how long it stays so.
///
/// Returns the colour and the milliseconds until it may change (`None`: never).
pub fn render(spec: PatternSpec, elapsed_ms: u64) -> (Rgb, Option<u64>) {
    match spec.timing {
        Timing::Solid => (spec.color, None),
        Timing::Blink { on_ms, off_ms } => {
            let (on, off) = (u64::from(on_ms), u64::from(off_ms));
            let period = on + off;
            if period == 0 {
                return (spec.color, None);
            }
            let t = elapsed_ms % period;
            if t < on {
                (spec.color, Some(on - t))
            } else {
                (Rgb::OFF, Some(period - t))
            }
        }
        Timing::Breathe { period_ms } => {
            let period = u64::from(period_ms);
            if period < 2 {
                return (spec.color, None);
            }
            let half = period / 2;
            let t = elapsed_ms % period;
            let level = if t < half {
                t * 255 / half
            } else {
                (period - t) * 255 / (period - half)
            };
            let level = u8::try_from(level).unwrap_or(u8::MAX);
            (spec.color.scaled(level), Some(BREATHE_STEP_MS))
        }
    }
}

/// Something that can show an [`Rgb`] colour.
pub trait RgbOutput {
    /// The error of the underlying pins or channels.
    type Error;
    /// Shows `color`. Implementations may quantize it (GPIOs are only on or off).
    fn write(&mut self, color: Rgb) -> Result<(), Self::Error>;
}

/// Whether a channel is lit by driving its pin high or low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Polarity {
    /// High lights the channel (common-cathode LED on push-pull pins).
    #[default]
    ActiveHigh,
    /// Low lights the channel (common-anode LED, or open-drain sinks).
    ActiveLow,
}

/// An RGB LED on three GPIOs: each channel is on when its value is at least 128.
///
/// A breathing pattern therefore shows as a blink with a 50 % duty cycle on GPIOs.
#[derive(Debug)]
pub struct RgbPins<R, G, B> {
    r: R,
    g: G,
    b: B,
    polarity: Polarity,
    // The level each pin was last driven to; `None` until written (pin state unknown at start).
    last: [Option<bool>; 3],
}

impl<R, G, B> RgbPins<R, G, B> {
    /// Takes the three pins.
    pub fn new(r: R, g: G, b: B, polarity: Polarity) -> Self {
        Self {
            r,
            g,
            b,
            polarity,
            last: [None; 3],
        }
    }

    /// The pins, for inspection (simulated pins record their level).
    pub fn pins(&self) -> (&R, &G, &B) {
        (&self.r, &self.g, &self.b)
    }

    /// Gives the pins back.
    pub fn release(self) -> (R, G, B) {
        (self.r, self.g, self.b)
    }
}

fn drive<P: OutputPin>(
    pin: &mut P,
    last: &mut Option<bool>,
    lit: bool,
    polarity: Polarity,
) -> Result<(), P::Error> {
    if *last == Some(lit) {
        return Ok(());
    }
    let high = lit == (polarity == Polarity::ActiveHigh);
    if high {
        pin.set_high()?;
    } else {
        pin.set_low()?;
    }
    *last = Some(lit);
    Ok(())
}

impl<R, G, B, E> RgbOutput for RgbPins<R, G, B>
where
    R: OutputPin<Error = E>,
    G: OutputPin<Error = E>,
    B: OutputPin<Error = E>,
{
    type Error = E;

    fn write(&mut self, color: Rgb) -> Result<(), E> {
        let [lr, lg, lb] = &mut self.last;
        drive(&mut self.r, lr, color.r >= 128, self.polarity)?;
        drive(&mut self.g, lg, color.g >= 128, self.polarity)?;
        drive(&mut self.b, lb, color.b >= 128, self.polarity)?;
        Ok(())
    }
}

/// An RGB LED on three PWM channels, with 8-bit brightness per channel.
#[derive(Debug)]
pub struct RgbPwm<R, G, B> {
    r: R,
    g: G,
    b: B,
    polarity: Polarity,
    // Read once: `max_duty_cycle` may cost a register read on some HALs.
    max: [u16; 3],
    last: [Option<u16>; 3],
}

impl<R: SetDutyCycle, G: SetDutyCycle, B: SetDutyCycle> RgbPwm<R, G, B> {
    /// Takes the three channels and reads their maximum duty cycles.
    pub fn new(r: R, g: G, b: B, polarity: Polarity) -> Self {
        let max = [r.max_duty_cycle(), g.max_duty_cycle(), b.max_duty_cycle()];
        Self {
            r,
            g,
            b,
            polarity,
            max,
            last: [None; 3],
        }
    }
}

impl<R, G, B> RgbPwm<R, G, B> {
    /// Gives the channels back.
    pub fn release(self) -> (R, G, B) {
        (self.r, self.g, self.b)
    }
}

fn duty_for(value: u8, max: u16, polarity: Polarity) -> u16 {
    let duty = u32::from(value) * u32::from(max) / 255;
    let duty = u16::try_from(duty).unwrap_or(max);
    match polarity {
        Polarity::ActiveHigh => duty,
        Polarity::ActiveLow => max - duty,
    }
}

fn set_duty<P: SetDutyCycle>(
    pin: &mut P,
    last: &mut Option<u16>,
    duty: u16,
) -> Result<(), P::Error> {
    if *last != Some(duty) {
        pin.set_duty_cycle(duty)?;
        *last = Some(duty);
    }
    Ok(())
}

impl<R, G, B, E> RgbOutput for RgbPwm<R, G, B>
where
    R: SetDutyCycle<Error = E>,
    G: SetDutyCycle<Error = E>,
    B: SetDutyCycle<Error = E>,
{
    type Error = E;

    fn write(&mut self, color: Rgb) -> Result<(), E> {
        let [lr, lg, lb] = &mut self.last;
        let [mr, mg, mb] = self.max;
        set_duty(&mut self.r, lr, duty_for(color.r, mr, self.polarity))?;
        set_duty(&mut self.g, lg, duty_for(color.g, mg, self.polarity))?;
        set_duty(&mut self.b, lb, duty_for(color.b, mb, self.polarity))?;
        Ok(())
    }
}

/// Errors of the status LED, generic over the pin or channel error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error<E> {
    /// Writing a pin or PWM channel failed; the next tick writes again.
    #[error("status LED output failed: {0:?}")]
    Output(E),
}

/// The status LED state machine. See the [module docs](self).
#[derive(Debug)]
pub struct StatusLed<O> {
    output: O,
    pattern: Pattern,
    // When the current pattern started; set by the first tick after `set_pattern`, so a pattern
    // always begins at its start (a blink begins "on") whatever the caller's clock reads.
    started_ms: Option<u64>,
    shown: Option<Rgb>,
    next_change_ms: Option<u64>,
}

impl<O: RgbOutput> StatusLed<O> {
    /// Takes the output. The LED shows [`Pattern::Booting`] from the first tick.
    pub fn new(output: O) -> Self {
        Self {
            output,
            pattern: Pattern::Booting,
            started_ms: None,
            shown: None,
            next_change_ms: Some(0),
        }
    }

    /// Switches to `pattern` from the next tick. Setting the current pattern again does not
    /// restart it, so callers may set it on every loop iteration.
    pub fn set_pattern(&mut self, pattern: Pattern) {
        if pattern != self.pattern {
            self.pattern = pattern;
            self.started_ms = None;
            self.next_change_ms = Some(0);
        }
    }

    /// The pattern being shown.
    pub fn pattern(&self) -> Pattern {
        self.pattern
    }

    /// The colour last written to the output (`None` before the first successful tick).
    pub fn color(&self) -> Option<Rgb> {
        self.shown
    }

    /// Advances the pattern to `now_ms` and writes the output if the colour changed.
    ///
    /// On an output error the colour is written again on the next tick.
    pub fn tick(&mut self, now_ms: u64) -> Result<(), Error<O::Error>> {
        let started = *self.started_ms.get_or_insert(now_ms);
        let (color, hold) = render(self.pattern.spec(), now_ms.saturating_sub(started));
        if self.shown != Some(color) {
            // Ask to be ticked again immediately if the write fails.
            self.next_change_ms = Some(now_ms);
            self.output.write(color).map_err(Error::Output)?;
            self.shown = Some(color);
        }
        self.next_change_ms = hold.map(|h| now_ms.saturating_add(h));
        Ok(())
    }

    /// When the colour may next change (ms, same clock as `tick`); `None` while it is constant.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.next_change_ms
    }

    /// The output, for inspection.
    pub fn output(&self) -> &O {
        &self.output
    }

    /// Gives the output (and so the pins) back.
    pub fn release(self) -> O {
        self.output
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::MockError;
    use embedded_hal_mock::eh1::digital::{Mock as Pin, State, Transaction as T};
    use embedded_hal_mock::eh1::pwm::{Mock as Pwm, Transaction as PwmT};

    fn pins(r: &[T], g: &[T], b: &[T]) -> RgbPins<Pin, Pin, Pin> {
        RgbPins::new(Pin::new(r), Pin::new(g), Pin::new(b), Polarity::ActiveHigh)
    }

    fn done(led: StatusLed<RgbPins<Pin, Pin, Pin>>) {
        let (mut r, mut g, mut b) = led.release().release();
        r.done();
        g.done();
        b.done();
    }

    #[test]
    fn solid_pattern_writes_once() {
        let mut led = StatusLed::new(pins(
            &[T::set(State::Low)],
            &[T::set(State::High)],
            &[T::set(State::Low)],
        ));
        led.set_pattern(Pattern::Online);
        led.tick(10).unwrap();
        assert_eq!(led.poll_timeout(), None, "solid colour never changes");
        for t in [20, 5_000, 1_000_000] {
            led.tick(t).unwrap();
        }
        assert_eq!(led.color(), Some(Rgb::new(0, 255, 0)));
        done(led);
    }

    #[test]
    fn blink_toggles_only_the_lit_channel_and_restarts_on_pattern_change() {
        let mut led = StatusLed::new(pins(
            // Error: red on at 1000, off at 1200, on at 1400; then Pairing at 1450: red stays off.
            &[
                T::set(State::High),
                T::set(State::Low),
                T::set(State::High),
                T::set(State::Low),
            ],
            &[T::set(State::Low)],
            // Pairing starts "on" at 1450 whatever the clock's phase, off at 1950.
            &[T::set(State::Low), T::set(State::High), T::set(State::Low)],
        ));
        led.set_pattern(Pattern::Error);
        led.tick(1_000).unwrap();
        assert_eq!(led.poll_timeout(), Some(1_200));
        led.tick(1_100).unwrap();
        led.tick(1_200).unwrap();
        assert_eq!(led.color(), Some(Rgb::OFF));
        assert_eq!(led.poll_timeout(), Some(1_400));
        led.tick(1_400).unwrap();
        led.set_pattern(Pattern::Pairing);
        led.set_pattern(Pattern::Pairing);
        assert_eq!(led.pattern(), Pattern::Pairing);
        led.tick(1_450).unwrap();
        assert_eq!(led.color(), Some(Rgb::new(0, 0, 255)));
        led.tick(1_949).unwrap();
        led.tick(1_950).unwrap();
        done(led);
    }

    #[test]
    fn active_low_inverts_levels() {
        let mut led = StatusLed::new(RgbPins::new(
            Pin::new(&[T::set(State::Low)]),
            Pin::new(&[T::set(State::High)]),
            Pin::new(&[T::set(State::High)]),
            Polarity::ActiveLow,
        ));
        led.set_pattern(Pattern::Offline);
        led.tick(0).unwrap();
        done(led);
    }

    #[test]
    fn pin_error_is_reported_and_retried() {
        let err = MockError::Io(std::io::ErrorKind::Other);
        let mut led = StatusLed::new(pins(
            &[T::set(State::Low)],
            &[
                T::set(State::High).with_error(err.clone()),
                T::set(State::High),
            ],
            &[T::set(State::Low)],
        ));
        led.set_pattern(Pattern::Online);
        assert_eq!(led.tick(0), Err(Error::Output(err)));
        assert_eq!(led.color(), None);
        assert_eq!(led.poll_timeout(), Some(0), "retry due at once");
        // Red was driven before green failed and is not written again; green and blue are.
        led.tick(5).unwrap();
        assert_eq!(led.color(), Some(Rgb::new(0, 255, 0)));
        done(led);
    }

    #[test]
    fn breathe_ramps_pwm_duty_up_and_down() {
        // Booting breathes white over 2 s: 0 at t=0, full at 1 s, half at 500 ms and 1500 ms.
        let ch = |duties: &[u16]| {
            let mut t = vec![PwmT::max_duty_cycle(1000)];
            t.extend(duties.iter().map(|&d| PwmT::set_duty_cycle(d)));
            Pwm::new(&t)
        };
        let seq = [0, 498, 1000, 498, 0];
        let out = RgbPwm::new(ch(&seq), ch(&seq), ch(&seq), Polarity::ActiveHigh);
        let mut led = StatusLed::new(out);
        assert_eq!(led.pattern(), Pattern::Booting);
        for t in [0, 500, 1_000, 1_500, 2_000] {
            led.tick(t).unwrap();
            assert_eq!(led.poll_timeout(), Some(t + BREATHE_STEP_MS));
        }
        // Same colour again: no writes.
        led.tick(4_000).unwrap();
        let (mut r, mut g, mut b) = led.release().release();
        r.done();
        g.done();
        b.done();
    }

    #[test]
    fn breathe_on_gpio_is_a_half_duty_blink() {
        let seq = [T::set(State::Low), T::set(State::High), T::set(State::Low)];
        let mut led = StatusLed::new(pins(&seq, &seq, &seq));
        for t in (0..=2_000).step_by(20) {
            led.tick(t).unwrap();
        }
        done(led);
    }

    #[test]
    fn every_pattern_is_distinguishable() {
        let sample = |p: Pattern| -> [Rgb; 8] {
            core::array::from_fn(|i| render(p.spec(), i as u64 * 125).0)
        };
        for (i, a) in Pattern::ALL.iter().enumerate() {
            for b in &Pattern::ALL[i + 1..] {
                assert_ne!(sample(*a), sample(*b), "{a:?} looks like {b:?}");
            }
        }
    }
}
