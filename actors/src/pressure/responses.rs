//! [`Responses`]: which of the `[pressure]` section's automated responses
//! are engaged, judged from the detector's level changes (synchronous; the
//! detector applies what it answers through a [`PressureResponder`]).
//!
//! A response watches the overall level, every resource of a kind (the
//! last `/` segment of a resource's name: `system/memory` and
//! `workers/memory` are both `memory`), or one resource by name. It is
//! engaged while the highest level among what it watches is at or above
//! its `at`. Several responses may share an action (say, `reject_low_priority`
//! at high memory and at critical CPU): the action is engaged while any of
//! them is, so it is applied once when the first engages and released when
//! the last releases.

use std::collections::BTreeMap;

use nexus_swarm_runtime::config::{PressureAction, PressureLevel, PressureResponse};

use super::core::{Level, LevelChange};

/// A change of an action's engagement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionChange {
    /// The action.
    pub action: PressureAction,
    /// Engaged (`true`) or released.
    pub engaged: bool,
    /// The level change that caused it.
    pub cause: LevelChange,
}

/// What applying an action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOutcome {
    /// Applied; what it did, for people.
    Applied(String),
    /// Nothing to apply it to (no LLM gateway, no scaler...); why.
    Unavailable(String),
}

/// Applies the actions [`Responses`] engages and releases. Called from the
/// detector's actor: it must not block.
pub trait PressureResponder: Send + Sync + 'static {
    /// Applies (`engaged`) or releases `action`.
    fn apply(&self, action: PressureAction, engaged: bool) -> ResponseOutcome;
}

/// Which responses are engaged (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Responses {
    rules: Vec<PressureResponse>,
    engaged: Vec<bool>,
    // The level of every resource seen, and the overall one.
    levels: BTreeMap<String, Level>,
    overall: Level,
}

fn level(at: PressureLevel) -> Level {
    match at {
        PressureLevel::Moderate => Level::Moderate,
        PressureLevel::High => Level::High,
        PressureLevel::Critical => Level::Critical,
    }
}

/// Whether `rule` watches `resource`: its kind or its exact name.
fn watches(watched: &str, resource: &str) -> bool {
    resource == watched || resource.rsplit('/').next() == Some(watched)
}

impl Responses {
    /// The responses `rules` declares, none engaged.
    pub fn new(rules: Vec<PressureResponse>) -> Self {
        Self {
            engaged: vec![false; rules.len()],
            rules,
            ..Self::default()
        }
    }

    /// The declared responses.
    pub fn rules(&self) -> &[PressureResponse] {
        &self.rules
    }

    /// The actions engaged now.
    pub fn engaged_actions(&self) -> Vec<PressureAction> {
        let mut actions: Vec<_> = self
            .rules
            .iter()
            .zip(&self.engaged)
            .filter(|(_, on)| **on)
            .map(|(r, _)| r.action)
            .collect();
        actions.sort();
        actions.dedup();
        actions
    }

    /// The highest level among what `rule` watches.
    fn watched_level(&self, rule: &PressureResponse) -> Level {
        match &rule.resource {
            None => self.overall,
            Some(watched) => self
                .levels
                .iter()
                .filter(|(resource, _)| watches(watched, resource))
                .map(|(_, l)| *l)
                .max()
                .unwrap_or_default(),
        }
    }

    /// Takes a level change; answers the actions it engaged or released,
    /// in declaration order of their first response.
    pub fn on_change(&mut self, change: &LevelChange) -> Vec<ActionChange> {
        let before = self.engaged_actions();
        match &change.resource {
            None => self.overall = change.to,
            Some(resource) if change.to == Level::Normal => {
                self.levels.remove(resource);
            }
            Some(resource) => {
                self.levels.insert(resource.clone(), change.to);
            }
        }
        for i in 0..self.rules.len() {
            self.engaged[i] = self.watched_level(&self.rules[i]) >= level(self.rules[i].at);
        }
        let after = self.engaged_actions();
        let mut changes = Vec::new();
        for rule in &self.rules {
            let (was, is) = (before.contains(&rule.action), after.contains(&rule.action));
            if was != is && !changes.iter().any(|c: &ActionChange| c.action == rule.action) {
                changes.push(ActionChange {
                    action: rule.action,
                    engaged: is,
                    cause: change.clone(),
                });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    fn rule(at: PressureLevel, resource: Option<&str>, action: PressureAction) -> PressureResponse {
        PressureResponse {
            at,
            resource: resource.map(str::to_string),
            action,
        }
    }

    fn change(resource: Option<&str>, from: Level, to: Level) -> LevelChange {
        LevelChange {
            resource: resource.map(str::to_string),
            from,
            to,
            utilization: 0,
            at: Instant::now(),
        }
    }

    fn actions(changes: &[ActionChange]) -> Vec<(PressureAction, bool)> {
        changes.iter().map(|c| (c.action, c.engaged)).collect()
    }

    #[test]
    fn a_kind_matches_every_resource_of_that_kind_and_only_those() {
        let mut r = Responses::new(vec![rule(
            PressureLevel::High,
            Some("memory"),
            PressureAction::ShrinkCaches,
        )]);
        assert!(
            r.on_change(&change(Some("workers/cpu"), Level::Normal, Level::Critical))
                .is_empty()
        );
        assert!(
            r.on_change(&change(Some("system/memory"), Level::Normal, Level::Moderate))
                .is_empty()
        );
        let c = r.on_change(&change(Some("system/memory"), Level::Moderate, Level::High));
        assert_eq!(actions(&c), [(PressureAction::ShrinkCaches, true)]);
        // A second memory resource going high engages nothing new.
        assert!(
            r.on_change(&change(Some("workers/memory"), Level::Normal, Level::High))
                .is_empty()
        );
        // Released only when the last one falls below high.
        assert!(
            r.on_change(&change(Some("system/memory"), Level::High, Level::Moderate))
                .is_empty()
        );
        let c = r.on_change(&change(Some("workers/memory"), Level::High, Level::Normal));
        assert_eq!(actions(&c), [(PressureAction::ShrinkCaches, false)]);
        assert!(r.engaged_actions().is_empty());
    }

    #[test]
    fn an_exact_name_watches_that_resource_alone() {
        let mut r = Responses::new(vec![rule(
            PressureLevel::Moderate,
            Some("system/cpu"),
            PressureAction::RejectLowPriority,
        )]);
        assert!(
            r.on_change(&change(Some("workers/cpu"), Level::Normal, Level::Critical))
                .is_empty()
        );
        let c = r.on_change(&change(Some("system/cpu"), Level::Normal, Level::Moderate));
        assert_eq!(actions(&c), [(PressureAction::RejectLowPriority, true)]);
    }

    #[test]
    fn no_resource_watches_the_overall_level() {
        let mut r = Responses::new(vec![
            rule(PressureLevel::High, None, PressureAction::ShedBestEffort),
            rule(PressureLevel::Critical, None, PressureAction::RejectLowPriority),
        ]);
        assert!(
            r.on_change(&change(Some("a/cpu"), Level::Normal, Level::Critical))
                .is_empty()
        );
        let c = r.on_change(&change(None, Level::Normal, Level::Critical));
        assert_eq!(
            actions(&c),
            [
                (PressureAction::ShedBestEffort, true),
                (PressureAction::RejectLowPriority, true)
            ]
        );
        let c = r.on_change(&change(None, Level::Critical, Level::High));
        assert_eq!(actions(&c), [(PressureAction::RejectLowPriority, false)]);
        let c = r.on_change(&change(None, Level::High, Level::Normal));
        assert_eq!(actions(&c), [(PressureAction::ShedBestEffort, false)]);
    }

    #[test]
    fn an_action_shared_by_two_responses_is_applied_once_and_released_with_the_last() {
        let mut r = Responses::new(vec![
            rule(PressureLevel::High, Some("memory"), PressureAction::RejectLowPriority),
            rule(PressureLevel::Critical, Some("cpu"), PressureAction::RejectLowPriority),
        ]);
        let c = r.on_change(&change(Some("system/memory"), Level::Normal, Level::High));
        assert_eq!(actions(&c), [(PressureAction::RejectLowPriority, true)]);
        assert!(
            r.on_change(&change(Some("system/cpu"), Level::High, Level::Critical))
                .is_empty()
        );
        assert!(
            r.on_change(&change(Some("system/memory"), Level::High, Level::Normal))
                .is_empty()
        );
        let c = r.on_change(&change(Some("system/cpu"), Level::Critical, Level::High));
        assert_eq!(actions(&c), [(PressureAction::RejectLowPriority, false)]);
    }
}
