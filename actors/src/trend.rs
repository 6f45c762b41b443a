//! Least-squares lines through timed samples, exact in integers: the
//! pressure detector's trends and forecasts and the scaler's predictive
//! mode fit the same way.

use tokio::time::Instant;

/// A least-squares line: `y = (sy x den + num x (n x t - sx)) / (n x den)`
/// with times in milliseconds from `origin`, all exact in `i128`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line {
    origin: Instant,
    n: i128,
    sx: i128,
    sy: i128,
    /// Slope numerator: n x Sxy - Sx x Sy.
    num: i128,
    /// Slope denominator: n x Sxx - Sx^2 (above zero).
    den: i128,
}

impl Line {
    /// The slope, in value units per minute.
    pub(crate) fn slope_per_minute(&self) -> i64 {
        let per_min = self.num * 60_000 / self.den;
        i64::try_from(per_min).unwrap_or(if per_min > 0 { i64::MAX } else { i64::MIN })
    }

    /// The line's value at `t` (0 below zero).
    pub(crate) fn at(&self, t: Instant) -> u64 {
        let x = i128::try_from(t.saturating_duration_since(self.origin).as_millis()).unwrap_or(i128::MAX / 4);
        let y = (self.sy * self.den + self.num * (self.n * x - self.sx)) / (self.n * self.den);
        u64::try_from(y.max(0)).unwrap_or(u64::MAX)
    }
}

/// The least-squares line through `samples` (in time order), if they span
/// some time.
pub(crate) fn fit(samples: impl IntoIterator<Item = (Instant, u64)>) -> Option<Line> {
    let mut samples = samples.into_iter().peekable();
    let &(origin, _) = samples.peek()?;
    let (mut n, mut sx, mut sy, mut sxx, mut sxy) = (0i128, 0i128, 0i128, 0i128, 0i128);
    for (t, v) in samples {
        // Windows are at most MAX_DURATION long: milliseconds fit easily.
        let x = i128::try_from(t.saturating_duration_since(origin).as_millis()).ok()?;
        let y = i128::from(v);
        n += 1;
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    let den = n * sxx - sx * sx;
    (n >= 2 && den > 0).then(|| Line {
        origin,
        n,
        sx,
        sy,
        num: n * sxy - sx * sy,
        den,
    })
}
