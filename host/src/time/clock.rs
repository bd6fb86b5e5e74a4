//! Setting the system clock: a step (clock_settime) or a slew (adjtime),
//! behind a trait so the sync loop is tested without changing the host's
//! clock.

use std::sync::Mutex;

/// Offsets at or below this are slewed once the clock was stepped once;
/// larger ones are stepped (ntpd's default step threshold).
pub const STEP_THRESHOLD_US: i64 = 128_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    Step,
    Slew,
}

impl Correction {
    pub fn as_str(self) -> &'static str {
        match self {
            Correction::Step => "step",
            Correction::Slew => "slew",
        }
    }
}

/// Step at boot (the first correction), then slew, unless the clock is off
/// by more than [`STEP_THRESHOLD_US`].
pub fn correction(offset_us: i64, stepped_before: bool) -> Correction {
    if !stepped_before || offset_us.abs() > STEP_THRESHOLD_US {
        Correction::Step
    } else {
        Correction::Slew
    }
}

pub trait Clock: Send + Sync + 'static {
    /// Moves the clock by `offset_us` at once.
    fn step(&self, offset_us: i64) -> std::io::Result<()>;
    /// Moves the clock by `offset_us` gradually.
    fn slew(&self, offset_us: i64) -> std::io::Result<()>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn step(&self, offset_us: i64) -> std::io::Result<()> {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec into a live local.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let total_ns = i128::from(now.tv_sec) * 1_000_000_000
            + i128::from(now.tv_nsec)
            + i128::from(offset_us) * 1000;
        let target = libc::timespec {
            tv_sec: total_ns.div_euclid(1_000_000_000) as libc::time_t,
            tv_nsec: total_ns.rem_euclid(1_000_000_000) as libc::c_long,
        };
        // SAFETY: clock_settime reads one timespec from a live local.
        if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &target) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn slew(&self, offset_us: i64) -> std::io::Result<()> {
        let delta = libc::timeval {
            tv_sec: offset_us.div_euclid(1_000_000) as libc::time_t,
            tv_usec: offset_us.rem_euclid(1_000_000) as libc::suseconds_t,
        };
        // SAFETY: adjtime reads one timeval from a live local; the old
        // delta is not asked for (null).
        if unsafe { libc::adjtime(&delta, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Records corrections instead of making them (tests).
#[derive(Default)]
pub struct RecordingClock {
    pub corrections: Mutex<Vec<(Correction, i64)>>,
}

impl Clock for RecordingClock {
    fn step(&self, offset_us: i64) -> std::io::Result<()> {
        self.corrections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((Correction::Step, offset_us));
        Ok(())
    }
    fn slew(&self, offset_us: i64) -> std::io::Result<()> {
        self.corrections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((Correction::Slew, offset_us));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_first_then_slew_small_offsets() {
        assert_eq!(correction(5, false), Correction::Step);
        assert_eq!(correction(5_000, true), Correction::Slew);
        assert_eq!(correction(-127_000, true), Correction::Slew);
        assert_eq!(correction(-500_000, true), Correction::Step);
        assert_eq!(correction(3_600_000_000, true), Correction::Step);
    }
}
