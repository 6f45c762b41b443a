use nexus_swarm_runtime::resources::ResourceKind;

use super::*;
use crate::llm::catalogue::DeploymentSpec;

fn catalogue(models: Vec<ModelSpec>) -> ModelCatalogue {
    ModelCatalogue::new(models).unwrap()
}

#[test]
fn the_table_holds_each_models_list_prices() {
    let c = catalogue(vec![
        ModelSpec::new("a", 8_000, 150_000, 600_000).deployment(DeploymentSpec::new("a@p", "p")),
        ModelSpec::new("b", 8_000, 2_500_000, 10_000_000)
            .deployment(DeploymentSpec::new("b@p", "p"))
            .deployment(DeploymentSpec::new("b@q", "q").prices(2_500_000, 10_000_000)),
    ]);
    let t = PriceTable::from_catalogue(&c).unwrap();
    assert_eq!(t.model("a"), Some(&ModelRates::new(150_000, 600_000, 0).unwrap()));
    assert_eq!(t.model("b"), Some(&ModelRates::new(2_500_000, 10_000_000, 0).unwrap()));
    // 1,234 prompt and 567 completion tokens of `b`: 3,085 + 5,670.
    let cost = t.cost(&ResourceKind::InputTokens, 1_234, Some("b")).unwrap()
        + t.cost(&ResourceKind::OutputTokens, 567, Some("b")).unwrap();
    assert_eq!(cost, c.get("b").unwrap().cost(1_234, 567));
    assert_eq!(cost, 3_085 + 5_670);
}

#[test]
fn a_deployment_priced_apart_is_refused_and_the_table_is_unchanged() {
    let c = catalogue(vec![
        ModelSpec::new("a", 8_000, 1, 1).deployment(DeploymentSpec::new("a@p", "p")),
        ModelSpec::new("b", 8_000, 100, 200)
            .deployment(DeploymentSpec::new("b@p", "p"))
            .deployment(DeploymentSpec::new("b@cheap", "q").prices(50, 200)),
    ]);
    let mut t = PriceTable::new();
    t.set_model("a", ModelRates::new(7, 7, 7).unwrap()).unwrap();
    let before = t.clone();
    let err = t.set_catalogue(&c).unwrap_err();
    let LedgerError::InvalidPrice { what, reason } = &err else {
        panic!("{err:?}")
    };
    assert!(what.contains("`b@cheap`") && what.contains("`b`"), "{what}");
    assert!(reason.contains("model of its own"), "{reason}");
    assert_eq!(t, before, "all or none");
}

#[test]
fn an_absurd_catalogue_price_is_refused_naming_the_model() {
    let c = catalogue(vec![
        ModelSpec::new("gold", 8_000, 10_000_000_001, 1).deployment(DeploymentSpec::new("gold@p", "p")),
    ]);
    let err = PriceTable::from_catalogue(&c).unwrap_err();
    assert!(
        matches!(&err, LedgerError::InvalidPrice { what, .. } if what == "model `gold`"),
        "{err:?}"
    );
}
