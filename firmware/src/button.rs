//! The hotspot's single button: short press, long press (pairing), very long press (factory
//! reset).
//!
//! [`Debouncer`] is the sans-IO core: feed it the raw "is pressed" level and the time, it
//! returns events. [`Button`] wraps it around an [`InputPin`] for polling loops;
//! [`AsyncButton`] sleeps on the pin's edge interrupt (`embedded-hal-async` [`Wait`]) while the
//! button is idle and samples it with an injected async delay while it is held.
//!
//! # Events
//!
//! - [`ButtonEvent::LongPress`] fires the moment the hold crosses the long threshold, while the
//!   button is still down, so the owner sees the LED switch to pairing and can let go.
//! - [`ButtonEvent::VeryLongPress`] likewise fires at its threshold. A 10 s hold therefore gives
//!   `LongPress` at 3 s and `VeryLongPress` at 10 s; the agent treats the second as overriding
//!   the first (factory reset cancels pairing).
//! - [`ButtonEvent::ShortPress`] fires on release if no long event fired during the hold.
//! - Nothing fires on the release of a long hold. If the release is the first time the owner
//!   learns of a long hold (the button was polled too rarely to see the threshold pass), the
//!   event for the longest threshold crossed fires then instead, exactly once.
//! - Presses shorter than the debounce time are contact bounce and produce nothing.

use embedded_hal::digital::InputPin;
use embedded_hal_async::delay::DelayNs;
use embedded_hal_async::digital::Wait;

/// What the owner did with the button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ButtonEvent {
    /// Pressed and released before the long-press threshold.
    ShortPress,
    /// Held past the long-press threshold (default 3 s): enter pairing mode.
    LongPress,
    /// Held past the very-long-press threshold (default 10 s): factory reset.
    VeryLongPress,
}

/// Which pin level means "pressed".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ActiveLevel {
    /// Pressed pulls the pin low (button to ground with a pull-up): the usual wiring.
    #[default]
    Low,
    /// Pressed drives the pin high.
    High,
}

/// Button timing and wiring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ButtonConfig {
    /// Which level means pressed. Default [`ActiveLevel::Low`].
    pub active: ActiveLevel,
    /// A level change counts once it has been stable this long. Default 30 ms.
    pub debounce_ms: u32,
    /// Hold time for [`ButtonEvent::LongPress`]. Default 3 000 ms.
    pub long_press_ms: u32,
    /// Hold time for [`ButtonEvent::VeryLongPress`]. Default 10 000 ms.
    pub very_long_press_ms: u32,
}

impl Default for ButtonConfig {
    fn default() -> Self {
        Self {
            active: ActiveLevel::Low,
            debounce_ms: 30,
            long_press_ms: 3_000,
            very_long_press_ms: 10_000,
        }
    }
}

/// Errors of the button drivers, generic over the pin error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error<E> {
    /// Reading or waiting on the pin failed.
    #[error("button pin failed: {0:?}")]
    Pin(E),
}

/// How far a hold has gone in events already reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fired {
    Nothing,
    Long,
    VeryLong,
}

/// The sans-IO debounce and press-length state machine. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Debouncer {
    config: ButtonConfig,
    pressed: bool,
    // A level that differs from `pressed` and since when it has been seen.
    pending_since: Option<u64>,
    // When the current press began: the first raw sample of it, so the debounce time counts.
    pressed_at: u64,
    fired: Fired,
}

impl Debouncer {
    /// A released button with `config`.
    pub fn new(config: ButtonConfig) -> Self {
        Self {
            config,
            pressed: false,
            pending_since: None,
            pressed_at: 0,
            fired: Fired::Nothing,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ButtonConfig {
        &self.config
    }

    /// The debounced state.
    pub fn is_pressed(&self) -> bool {
        self.pressed
    }

    /// True when nothing is pending: released, and no level change being debounced.
    pub fn is_idle(&self) -> bool {
        !self.pressed && self.pending_since.is_none()
    }

    /// How long the button has been held at `now_ms` (0 when released), e.g. for LED feedback.
    pub fn held_ms(&self, now_ms: u64) -> u64 {
        if self.pressed {
            now_ms.saturating_sub(self.pressed_at)
        } else {
            0
        }
    }

    /// Feeds one raw sample (`active`: the pin reads "pressed") taken at `now_ms`.
    pub fn update(&mut self, active: bool, now_ms: u64) -> Option<ButtonEvent> {
        if active == self.pressed {
            // A blip shorter than the debounce time: forget it.
            self.pending_since = None;
        } else {
            let since = *self.pending_since.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) >= u64::from(self.config.debounce_ms) {
                self.pending_since = None;
                self.pressed = active;
                if active {
                    self.pressed_at = since;
                    self.fired = Fired::Nothing;
                } else {
                    // The press ended when the release started, not when it was confirmed.
                    let held = since.saturating_sub(self.pressed_at);
                    return match self.crossed(held) {
                        Fired::Nothing => Some(ButtonEvent::ShortPress),
                        level => self.fire(level),
                    };
                }
            }
        }
        if self.pressed {
            // While a release is being debounced the hold is over unless it turns out a bounce.
            let end = self.pending_since.unwrap_or(now_ms);
            let level = self.crossed(end.saturating_sub(self.pressed_at));
            return self.fire(level);
        }
        None
    }

    /// When the state machine next needs a sample to make progress (a debounce completing or a
    /// threshold passing), in the caller's ms; `None` when idle or after the last threshold.
    pub fn poll_timeout(&self) -> Option<u64> {
        if let Some(since) = self.pending_since {
            return Some(since.saturating_add(u64::from(self.config.debounce_ms)));
        }
        if !self.pressed {
            return None;
        }
        let next = match self.fired {
            Fired::Nothing => self.config.long_press_ms,
            Fired::Long => self.config.very_long_press_ms,
            Fired::VeryLong => return None,
        };
        Some(self.pressed_at.saturating_add(u64::from(next)))
    }

    fn crossed(&self, held_ms: u64) -> Fired {
        if held_ms >= u64::from(self.config.very_long_press_ms) {
            Fired::VeryLong
        } else if held_ms >= u64::from(self.config.long_press_ms) {
            Fired::Long
        } else {
            Fired::Nothing
        }
    }

    // Reports `level` if it goes beyond what was already reported for this hold.
    fn fire(&mut self, level: Fired) -> Option<ButtonEvent> {
        if level <= self.fired {
            return None;
        }
        self.fired = level;
        match level {
            Fired::Nothing => None,
            Fired::Long => Some(ButtonEvent::LongPress),
            Fired::VeryLong => Some(ButtonEvent::VeryLongPress),
        }
    }
}

fn is_active<P: InputPin>(pin: &mut P, active: ActiveLevel) -> Result<bool, Error<P::Error>> {
    match active {
        ActiveLevel::Low => pin.is_low(),
        ActiveLevel::High => pin.is_high(),
    }
    .map_err(Error::Pin)
}

/// A polled button on an [`InputPin`].
///
/// Call [`Button::poll`] every 10–20 ms (or at [`Button::poll_timeout`] and on the pin's
/// interrupt). It reads the pin once per call.
#[derive(Debug)]
pub struct Button<P> {
    pin: P,
    core: Debouncer,
}

impl<P: InputPin> Button<P> {
    /// Takes the pin.
    pub fn new(pin: P, config: ButtonConfig) -> Self {
        Self {
            pin,
            core: Debouncer::new(config),
        }
    }

    /// Samples the pin at `now_ms` and returns the event it completes, if any.
    pub fn poll(&mut self, now_ms: u64) -> Result<Option<ButtonEvent>, Error<P::Error>> {
        let active = is_active(&mut self.pin, self.core.config.active)?;
        Ok(self.core.update(active, now_ms))
    }
}

impl<P> Button<P> {
    /// The debounced state.
    pub fn is_pressed(&self) -> bool {
        self.core.is_pressed()
    }

    /// How long the button has been held at `now_ms` (0 when released).
    pub fn held_ms(&self, now_ms: u64) -> u64 {
        self.core.held_ms(now_ms)
    }

    /// See [`Debouncer::poll_timeout`].
    pub fn poll_timeout(&self) -> Option<u64> {
        self.core.poll_timeout()
    }

    /// The pin, mutably: simulated pins are pressed through this.
    pub fn pin_mut(&mut self) -> &mut P {
        &mut self.pin
    }

    /// Gives the pin back.
    pub fn release(self) -> P {
        self.pin
    }
}

/// A button that awaits the pin's edge while idle, for async executors (embassy, tokio over
/// `linux-embedded-hal`'s async GPIO).
///
/// Durations are measured by adding up the injected delays, so no clock is needed: while the
/// button is pressed or bouncing, it samples the pin every `sample_ms` (default 10 ms) with
/// `delay`; while it is idle it awaits the edge and costs nothing.
#[derive(Debug)]
pub struct AsyncButton<P, D> {
    pin: P,
    delay: D,
    core: Debouncer,
    sample_ms: u32,
    // Virtual time: the sum of the delays awaited while not idle.
    now_ms: u64,
}

impl<P, D> AsyncButton<P, D>
where
    P: Wait + InputPin,
    D: DelayNs,
{
    /// Takes the pin and the delay; samples every 10 ms while pressed.
    pub fn new(pin: P, delay: D, config: ButtonConfig) -> Self {
        Self {
            pin,
            delay,
            core: Debouncer::new(config),
            sample_ms: 10,
            now_ms: 0,
        }
    }

    /// Sets the sampling interval used while the button is pressed or bouncing (min 1 ms).
    pub fn with_sample_ms(mut self, sample_ms: u32) -> Self {
        self.sample_ms = sample_ms.max(1);
        self
    }

    /// Waits for the next event. Cancel-safe between samples: dropping the future loses at
    /// most the current sample.
    pub async fn next_event(&mut self) -> Result<ButtonEvent, Error<P::Error>> {
        let active_level = self.core.config.active;
        loop {
            if self.core.is_idle() {
                // Sample right at the edge: that is when the press began.
                match active_level {
                    ActiveLevel::Low => self.pin.wait_for_low().await,
                    ActiveLevel::High => self.pin.wait_for_high().await,
                }
                .map_err(Error::Pin)?;
            } else {
                self.delay.delay_ms(self.sample_ms).await;
                self.now_ms = self.now_ms.saturating_add(u64::from(self.sample_ms));
            }
            let active = is_active(&mut self.pin, active_level)?;
            if let Some(event) = self.core.update(active, self.now_ms) {
                return Ok(event);
            }
        }
    }

    /// The debounced state.
    pub fn is_pressed(&self) -> bool {
        self.core.is_pressed()
    }

    /// Gives the pin and the delay back.
    pub fn release(self) -> (P, D) {
        (self.pin, self.delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::MockError;
    use embedded_hal_mock::eh1::delay::NoopDelay;
    use embedded_hal_mock::eh1::digital::{Mock as Pin, State, Transaction as T};

    /// Runs a level script through a debouncer sampled every `step` ms: `(level, duration)`.
    fn run(config: ButtonConfig, step: u64, script: &[(bool, u64)]) -> Vec<(u64, ButtonEvent)> {
        let mut d = Debouncer::new(config);
        let mut now = 0;
        let mut events = Vec::new();
        for &(level, duration) in script {
            let end = now + duration;
            while now < end {
                if let Some(e) = d.update(level, now) {
                    events.push((now, e));
                }
                now += step;
            }
        }
        events
    }

    fn check(name: &str, step: u64, script: &[(bool, u64)], expected: &[(u64, ButtonEvent)]) {
        let got = run(ButtonConfig::default(), step, script);
        assert_eq!(got, expected, "case {name}");
    }

    #[test]
    fn press_lengths() {
        use ButtonEvent::*;
        // Pressed at 100; release confirmed 30 ms after it starts.
        check(
            "short",
            10,
            &[(false, 100), (true, 200), (false, 100)],
            &[(330, ShortPress)],
        );
        check(
            "bounce shorter than debounce",
            10,
            &[(false, 100), (true, 20), (false, 100)],
            &[],
        );
        check(
            "bouncy contacts still give one press",
            10,
            &[
                (false, 10),
                (true, 10),
                (false, 10),
                (true, 10),
                (false, 10),
                (true, 300),
                (false, 100),
            ],
            &[(380, ShortPress)],
        );
        check(
            "long fires while held, not on release",
            10,
            &[(false, 100), (true, 4_000), (false, 200)],
            &[(3_100, LongPress)],
        );
        check(
            "very long fires long then very long",
            10,
            &[(false, 100), (true, 12_000), (false, 200)],
            &[(3_100, LongPress), (10_100, VeryLongPress)],
        );
        check(
            "held exactly to the threshold",
            10,
            &[(true, 3_000), (false, 100)],
            &[(3_000, LongPress)],
        );
        check(
            "held just below the threshold",
            10,
            &[(true, 2_990), (false, 100)],
            &[(3_020, ShortPress)],
        );
        check(
            "rare polling catches the hold only at release",
            1_000,
            &[(true, 2_500), (false, 2_000)],
            &[(3_000, LongPress)],
        );
        check(
            "a sample gap jumping past both thresholds reports the longer",
            11_000,
            &[(true, 22_000), (false, 22_000)],
            &[(11_000, VeryLongPress)],
        );
    }

    #[test]
    fn late_release_detection_reports_a_missed_long_press_once() {
        let mut d = Debouncer::new(ButtonConfig::default());
        assert_eq!(d.update(true, 0), None);
        assert_eq!(d.update(true, 30), None);
        assert!(d.is_pressed());
        assert_eq!(d.update(true, 2_900), None);
        // Released at 3 500 (held 3.5 s) but the sampler only saw the release start then.
        assert_eq!(d.update(false, 3_500), Some(ButtonEvent::LongPress));
        assert_eq!(
            d.update(false, 3_530),
            None,
            "no second event on confirmed release"
        );
        assert!(!d.is_pressed());
    }

    #[test]
    fn poll_timeout_names_the_next_deadline() {
        let mut d = Debouncer::new(ButtonConfig::default());
        assert_eq!(d.poll_timeout(), None);
        d.update(true, 1_000);
        assert_eq!(d.poll_timeout(), Some(1_030));
        d.update(true, 1_030);
        assert_eq!(d.poll_timeout(), Some(4_000));
        assert_eq!(d.held_ms(2_000), 1_000);
        assert_eq!(d.update(true, 4_000), Some(ButtonEvent::LongPress));
        assert_eq!(d.poll_timeout(), Some(11_000));
        assert_eq!(d.update(true, 11_000), Some(ButtonEvent::VeryLongPress));
        assert_eq!(d.poll_timeout(), None);
    }

    #[test]
    fn polled_pin_active_low() {
        // Idle high, pressed low for 60 ms, released.
        let mut states = vec![T::get(State::High)];
        states.extend([0, 10, 20, 30, 40, 50].map(|_| T::get(State::Low)));
        states.extend([0, 10, 20, 30].map(|_| T::get(State::High)));
        let mut button = Button::new(Pin::new(&states), ButtonConfig::default());
        let mut events = Vec::new();
        for t in (0..110).step_by(10) {
            if let Some(e) = button.poll(t).unwrap() {
                events.push((t, e));
            }
        }
        assert_eq!(events, [(100, ButtonEvent::ShortPress)]);
        button.release().done();
    }

    #[test]
    fn polled_pin_active_high_and_custom_thresholds() {
        let config = ButtonConfig {
            active: ActiveLevel::High,
            debounce_ms: 5,
            long_press_ms: 50,
            very_long_press_ms: 100,
        };
        let states: Vec<T> = (0..12).map(|_| T::get(State::High)).collect();
        let mut button = Button::new(Pin::new(&states), config);
        let mut events = Vec::new();
        for t in (0..120).step_by(10) {
            if let Some(e) = button.poll(t).unwrap() {
                events.push((t, e));
            }
        }
        assert_eq!(
            events,
            [
                (50, ButtonEvent::LongPress),
                (100, ButtonEvent::VeryLongPress)
            ]
        );
        assert!(button.is_pressed());
        assert_eq!(button.held_ms(110), 110);
        button.release().done();
    }

    #[test]
    fn pin_error_is_reported() {
        let err = MockError::Io(std::io::ErrorKind::Other);
        let mut button = Button::new(
            Pin::new(&[T::get(State::Low).with_error(err.clone())]),
            ButtonConfig::default(),
        );
        assert_eq!(button.poll(0), Err(Error::Pin(err)));
        button.release().done();
    }

    /// Drives a future whose every await is immediately ready (the mocks never pend).
    fn block_on<F: core::future::Future>(f: F) -> F::Output {
        let mut f = core::pin::pin!(f);
        let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            core::task::Poll::Ready(out) => out,
            core::task::Poll::Pending => panic!("mock future pended"),
        }
    }

    #[test]
    fn async_button_waits_for_edge_then_debounces() {
        let config = ButtonConfig {
            debounce_ms: 20,
            long_press_ms: 100,
            very_long_press_ms: 1_000,
            ..ButtonConfig::default()
        };
        let mut script = vec![
            // A 10 ms bounce: edge, low, high again after one sample: no event.
            T::wait_for_state(State::Low),
            T::get(State::Low),
            T::get(State::High),
            // A real press: edge, then held for 120 ms of samples, then released.
            T::wait_for_state(State::Low),
        ];
        script.extend((0..=12).map(|_| T::get(State::Low)));
        script.extend((0..3).map(|_| T::get(State::High)));
        // Then a short press.
        script.push(T::wait_for_state(State::Low));
        script.extend((0..4).map(|_| T::get(State::Low)));
        script.extend((0..3).map(|_| T::get(State::High)));
        let mut button = AsyncButton::new(Pin::new(&script), NoopDelay::new(), config);
        assert_eq!(block_on(button.next_event()), Ok(ButtonEvent::LongPress));
        assert!(button.is_pressed());
        assert_eq!(block_on(button.next_event()), Ok(ButtonEvent::ShortPress));
        assert!(!button.is_pressed());
        let (mut pin, _delay) = button.release();
        pin.done();
    }

    #[test]
    fn async_button_reports_wait_error() {
        let err = MockError::Io(std::io::ErrorKind::BrokenPipe);
        let pin = Pin::new(&[T::wait_for_state(State::High).with_error(err.clone())]);
        let config = ButtonConfig {
            active: ActiveLevel::High,
            ..ButtonConfig::default()
        };
        let mut button = AsyncButton::new(pin, NoopDelay::new(), config);
        assert_eq!(block_on(button.next_event()), Err(Error::Pin(err)));
        button.release().0.done();
    }
}
