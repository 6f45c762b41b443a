//! One price book: the ledger's model prices come from the LLM model
//! catalogue ([`ModelCatalogue`]), so a model's price is written once (in
//! configuration, `[[llm.models]]`, or in a [`ModelSpec`]) and the cost a
//! gateway response reports is the cost its ledger records commit.
//!
//! The ledger prices usage per model (a record names its model, not the
//! deployment that served it), so a catalogue in which a deployment
//! overrides its model's prices is refused with
//! [`LedgerError::InvalidPrice`] naming the deployment, rather than priced
//! at the model's list price while the gateway charged another. A
//! differently priced deployment is declared as a model of its own.
//!
//! ```
//! use nexus_swarm_actors::cost_ledger::{ModelRates, PriceTable};
//! use nexus_swarm_actors::llm::{DeploymentSpec, ModelCatalogue, ModelSpec};
//! use nexus_swarm_runtime::resources::ResourceKind;
//!
//! let catalogue = ModelCatalogue::new(vec![
//!     ModelSpec::new("small", 16_000, 150_000, 600_000).deployment(DeploymentSpec::new("small@sim", "sim")),
//! ])
//! .unwrap();
//! let prices = PriceTable::from_catalogue(&catalogue).unwrap();
//! assert_eq!(prices.model("small"), Some(&ModelRates::new(150_000, 600_000, 0).unwrap()));
//! // 10,000 prompt tokens at $0.15 per million: 1,500 micro-dollars.
//! assert_eq!(prices.cost(&ResourceKind::InputTokens, 10_000, Some("small")).unwrap(), 1_500);
//! ```

use super::{CostLedgerMsg, LedgerError, LedgerHandle, ModelRates, PriceTable};
use crate::llm::catalogue::{ModelCatalogue, ModelSpec};

impl ModelRates {
    /// A catalogue model's prices per million prompt and completion tokens,
    /// with nothing per request. Refused if one of its deployments is
    /// priced differently (see the module docs) or a price is absurd.
    pub fn of_model(model: &ModelSpec) -> Result<ModelRates, LedgerError> {
        let list = (model.input_price, model.output_price);
        if let Some(d) = model.deployments.iter().find(|d| model.prices_of(d) != list) {
            let (input, output) = model.prices_of(d);
            return Err(LedgerError::InvalidPrice {
                what: format!("deployment `{}` of model `{}`", d.id, model.name),
                reason: format!(
                    "its prices ({input} and {output} micro-dollars per million prompt and completion tokens) \
                     differ from its model's ({} and {}); the ledger prices usage per model, so declare the \
                     deployment as a model of its own or drop its prices",
                    list.0, list.1
                ),
            });
        }
        ModelRates::new(list.0, list.1, 0).map_err(|e| match e {
            LedgerError::InvalidPrice { reason, .. } => LedgerError::InvalidPrice {
                what: format!("model `{}`", model.name),
                reason,
            },
            e => e,
        })
    }
}

/// Every model's rates, in catalogue order; the first refusal stops it.
fn catalogue_rates(catalogue: &ModelCatalogue) -> Result<Vec<(String, ModelRates)>, LedgerError> {
    catalogue
        .models
        .iter()
        .map(|m| Ok((m.name.clone(), ModelRates::of_model(m)?)))
        .collect()
}

impl PriceTable {
    /// A table holding the catalogue's model prices ([`ModelRates::of_model`])
    /// and no kind rates.
    pub fn from_catalogue(catalogue: &ModelCatalogue) -> Result<PriceTable, LedgerError> {
        let mut table = PriceTable::new();
        table.set_catalogue(catalogue)?;
        Ok(table)
    }

    /// Sets the rates of every model of the catalogue, all or none: on an
    /// error the table is unchanged. Kind rates and other models' rates
    /// stay.
    pub fn set_catalogue(&mut self, catalogue: &ModelCatalogue) -> Result<(), LedgerError> {
        self.set_models(catalogue_rates(catalogue)?)
    }

    /// Sets several models' rates, all or none.
    pub(super) fn set_models(&mut self, rates: Vec<(String, ModelRates)>) -> Result<(), LedgerError> {
        let mut next = self.clone();
        for (model, r) in rates {
            next.set_model(model, r)?;
        }
        *self = next;
        Ok(())
    }
}

impl LedgerHandle {
    /// Prices usage from the catalogue: every model's rates
    /// ([`ModelRates::of_model`]) are set in one committed change, all or
    /// none, replacing what those models had (kind rates and other models
    /// stay). Call it with the catalogue the gateway was built with.
    pub async fn use_catalogue_prices(&self, catalogue: &ModelCatalogue) -> Result<(), LedgerError> {
        let rates = catalogue_rates(catalogue)?;
        self.call(|r| CostLedgerMsg::SetModelPrices(rates, r)).await
    }
}

#[cfg(test)]
mod tests;
