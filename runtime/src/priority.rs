//! Message priorities: the three lanes of every agent's mailbox.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The priority of a message, which picks the lane it waits in.
///
/// An agent drains `High` before `Normal` before `Low`, with aging so that a
/// lower lane still progresses under sustained load on a higher one (see
/// [`crate::mailbox::DrainPolicy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Interactive and control traffic. Seed default timeout: 10 s.
    High,
    /// Ordinary work. Seed default timeout: 30 s.
    #[default]
    Normal,
    /// Background work. Seed default timeout: 60 s.
    Low,
}

impl Priority {
    /// All priorities, highest first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The lane index of this priority: 0 for high, 1 for normal, 2 for low.
    #[inline]
    pub const fn index(self) -> usize {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        }
    }

    /// The priority of a lane index, if the index is one of 0, 1, 2.
    #[inline]
    pub const fn from_index(index: usize) -> Option<Priority> {
        match index {
            0 => Some(Priority::High),
            1 => Some(Priority::Normal),
            2 => Some(Priority::Low),
            _ => None,
        }
    }

    /// The lowercase name used in configuration and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text did not name a priority.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority {0:?}: expected high, normal or low")]
pub struct ParsePriorityError(pub String);

impl FromStr for Priority {
    type Err = ParsePriorityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "high" => Ok(Priority::High),
            "normal" => Ok(Priority::Normal),
            "low" => Ok(Priority::Low),
            other => Err(ParsePriorityError(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips_and_orders_high_first() {
        for p in Priority::ALL {
            assert_eq!(Priority::from_index(p.index()), Some(p));
            assert_eq!(p.as_str().parse::<Priority>(), Ok(p));
        }
        assert!(Priority::High < Priority::Normal && Priority::Normal < Priority::Low);
        assert_eq!(Priority::from_index(3), None);
        assert!("urgent".parse::<Priority>().is_err());
    }
}
