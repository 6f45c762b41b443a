use std::collections::BTreeSet;

use super::*;

fn cat() -> ModelCatalogue {
    ModelCatalogue::new(vec![
        ModelSpec::new("small", 8_000, 150_000, 600_000)
            .capabilities([Capability::Chat])
            .max_output(2_000)
            .fallbacks(["medium"])
            .context_fallbacks(["large"])
            .deployment(DeploymentSpec::new("small@a", "a")),
        ModelSpec::new("medium", 32_000, 1_000_000, 4_000_000)
            .capabilities([Capability::Chat, Capability::Tools])
            .deployment(DeploymentSpec::new("medium@a", "a")),
        ModelSpec::new("large", 128_000, 2_500_000, 10_000_000)
            .capabilities([Capability::Chat, Capability::Tools, Capability::Vision])
            .deployment(DeploymentSpec::new("large@a", "a"))
            .deployment(DeploymentSpec::new("large@b", "b").prices(3_000_000, 12_000_000)),
    ])
    .unwrap()
}

#[test]
fn cheapest_model_that_meets_the_needs_is_chosen() {
    let c = cat();
    let none = ModelChoice::Cheapest(BTreeSet::new());
    assert_eq!(c.models[c.choose(&none, 100, 100).unwrap()].name, "small");
    let tools = ModelChoice::Cheapest([Capability::Tools].into());
    assert_eq!(c.models[c.choose(&tools, 100, 100).unwrap()].name, "medium");
    let vision = ModelChoice::Cheapest([Capability::Vision].into());
    assert_eq!(c.models[c.choose(&vision, 100, 100).unwrap()].name, "large");
}

#[test]
fn a_request_too_large_for_the_cheap_window_goes_to_a_larger_model() {
    let c = cat();
    let none = ModelChoice::Cheapest(BTreeSet::new());
    assert_eq!(c.models[c.choose(&none, 7_000, 1_500).unwrap()].name, "medium");
    assert_eq!(c.models[c.choose(&none, 100_000, 1_000).unwrap()].name, "large");
    assert!(matches!(
        c.choose(&none, 200_000, 1_000),
        Err(CatalogueError::NoModelFits { tokens: 201_000, .. })
    ));
}

#[test]
fn named_model_is_used_and_unknown_names_are_typed_errors() {
    let c = cat();
    assert_eq!(c.choose(&ModelChoice::Named("large".into()), 1, 1).unwrap(), 2);
    assert_eq!(
        c.choose(&ModelChoice::Named("nope".into()), 1, 1),
        Err(CatalogueError::UnknownModel("nope".into()))
    );
}

#[test]
fn costs_are_integer_micro_dollars_rounded_up() {
    // 1000 in at $0.15/M + 500 out at $0.60/M = 150 + 300 micro-dollars.
    assert_eq!(cost_micro_usd(1000, 500, 150_000, 600_000), 450);
    // 1 token at $0.15/M is 0.15 micro-dollars: rounded up to 1.
    assert_eq!(cost_micro_usd(1, 0, 150_000, 0), 1);
    assert_eq!(cost_micro_usd(0, 0, 150_000, 600_000), 0);
    assert_eq!(cost_micro_usd(u64::MAX, u64::MAX, u64::MAX, u64::MAX), u64::MAX);
    let c = cat();
    // The worst deployment price is what an estimate reserves.
    assert_eq!(c.models[2].worst_cost(1_000_000, 0), 3_000_000);
}

#[test]
fn invalid_catalogues_are_refused_naming_the_problem() {
    let dup = ModelCatalogue::new(vec![
        ModelSpec::new("m", 10, 1, 1).deployment(DeploymentSpec::new("d", "p")),
        ModelSpec::new("m", 10, 1, 1).deployment(DeploymentSpec::new("e", "p")),
    ]);
    assert_eq!(dup, Err(CatalogueError::Duplicate("m".into())));
    let fb = ModelCatalogue::new(vec![
        ModelSpec::new("m", 10, 1, 1)
            .fallbacks(["ghost"])
            .deployment(DeploymentSpec::new("d", "p")),
    ]);
    assert!(matches!(fb, Err(CatalogueError::UnknownFallback { .. })));
    let nodep = ModelCatalogue::new(vec![ModelSpec::new("m", 10, 1, 1)]);
    assert_eq!(nodep, Err(CatalogueError::NoDeployment("m".into())));
    let w0 = ModelCatalogue::new(vec![
        ModelSpec::new("m", 10, 1, 1).deployment(DeploymentSpec::new("d", "p").weight(0)),
    ]);
    assert!(matches!(w0, Err(CatalogueError::Invalid { .. })));
}

#[test]
fn catalogue_parses_from_toml() {
    let text = r#"
        [[models]]
        name = "small"
        capabilities = ["tools"]
        context_window = 8000
        max_output_tokens = 1000
        input_price = 150000
        output_price = 600000
        [[models.deployments]]
        id = "small@sim"
        provider = "sim"
        limits = { requests_per_minute = 100, tokens_per_minute = 10000 }
    "#;
    let c: ModelCatalogue = toml::from_str(text).unwrap();
    c.validate().unwrap();
    assert_eq!(c.models[0].deployments[0].limits.requests_per_minute, Some(100));
    assert_eq!(c.models[0].deployments[0].weight, 1);
    assert!(toml::from_str::<ModelCatalogue>("[[models]]\nname = \"x\"\nbogus = 1\n").is_err());
}
