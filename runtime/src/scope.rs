//! [`Scope`]: whose usage, in the one vocabulary budgets, quotas and usage
//! records share (tenant / workflow / agent / model).
//!
//! A usage record carries the scope it was spent in (every field it knows
//! set); a budget or a quota selects usage by a scope (the fields it sets
//! must be equal, the others match anything, so the empty scope selects
//! everything).
//!
//! ```
//! use nexus_swarm_runtime::scope::Scope;
//!
//! let spent = Scope::all().tenant("acme").agent("writer").model("gpt-4o-mini");
//! assert!(Scope::all().tenant("acme").covers(&spent));
//! assert!(!Scope::all().tenant("globex").covers(&spent));
//! assert_eq!(Scope::all().tenant("acme").agent("writer").to_string(), "tenant=acme,agent=writer");
//! assert_eq!(Scope::all().to_string(), "*");
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// Tenant, workflow, agent and model, each optional. As a selector (a
/// budget's or a quota's), the fields set must equal the usage's and the
/// others match anything; as a usage's own scope, the fields set say who
/// spent it.
///
/// Field order is part of the stored encoding of ledger records and
/// budget definitions: do not reorder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scope {
    /// The tenant (customer, team).
    pub tenant: Option<String>,
    /// The workflow within the tenant.
    pub workflow: Option<String>,
    /// The agent (or pool) that spends.
    pub agent: Option<String>,
    /// The LLM model, for token usage.
    pub model: Option<String>,
}

impl Scope {
    /// The names of the fields, in order (as [`fields`](Self::fields) gives them).
    pub const FIELD_NAMES: [&'static str; 4] = ["tenant", "workflow", "agent", "model"];

    /// The scope that selects everything (no field set).
    pub fn all() -> Self {
        Self::default()
    }

    /// Builder-style: only this tenant.
    pub fn tenant(mut self, v: impl Into<String>) -> Self {
        self.tenant = Some(v.into());
        self
    }

    /// Builder-style: only this workflow.
    pub fn workflow(mut self, v: impl Into<String>) -> Self {
        self.workflow = Some(v.into());
        self
    }

    /// Builder-style: only this agent.
    pub fn agent(mut self, v: impl Into<String>) -> Self {
        self.agent = Some(v.into());
        self
    }

    /// Builder-style: only this model.
    pub fn model(mut self, v: impl Into<String>) -> Self {
        self.model = Some(v.into());
        self
    }

    /// Whether no field is set (the scope selects everything).
    pub fn is_all(&self) -> bool {
        self.fields().iter().all(|(_, v)| v.is_none())
    }

    /// Each field with its name, in order: tenant, workflow, agent, model.
    pub fn fields(&self) -> [(&'static str, &Option<String>); 4] {
        [
            ("tenant", &self.tenant),
            ("workflow", &self.workflow),
            ("agent", &self.agent),
            ("model", &self.model),
        ]
    }

    /// Whether everything `other` names is in this scope: every field this
    /// scope sets is set to the same value in `other`. A usage spent in
    /// scope `other` is selected by this one exactly when this holds.
    pub fn covers(&self, other: &Scope) -> bool {
        self.fields()
            .iter()
            .zip(other.fields().iter())
            .all(|((_, mine), (_, theirs))| mine.is_none() || mine == theirs)
    }
}

impl fmt::Display for Scope {
    /// `field=value` pairs joined by commas, or `*` for the scope that
    /// selects everything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, value) in self.fields() {
            if let Some(v) = value {
                if !first {
                    f.write_str(",")?;
                }
                write!(f, "{name}={v}")?;
                first = false;
            }
        }
        if first {
            f.write_str("*")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_scope_covers_everything_and_a_set_field_narrows_it() {
        let usage = Scope::all().tenant("t").workflow("w").agent("a").model("m");
        assert!(Scope::all().covers(&usage));
        assert!(Scope::all().workflow("w").covers(&usage));
        assert!(!Scope::all().workflow("x").covers(&usage));
        // A selector naming a field the usage does not carry does not cover it.
        assert!(!Scope::all().agent("a").covers(&Scope::all().tenant("t")));
        assert!(usage.covers(&usage));
        assert!(Scope::all().is_all());
        assert!(!usage.is_all());
    }

    #[test]
    fn display_lists_the_set_fields_in_order() {
        assert_eq!(Scope::all().model("m").tenant("t").to_string(), "tenant=t,model=m");
        assert_eq!(Scope::all().to_string(), "*");
    }

    #[test]
    fn config_form_rejects_unknown_fields_and_defaults_the_missing_ones() {
        let s: Scope = toml::from_str("tenant = \"acme\"").unwrap();
        assert_eq!(s, Scope::all().tenant("acme"));
        assert!(toml::from_str::<Scope>("team = \"x\"").is_err());
    }
}
