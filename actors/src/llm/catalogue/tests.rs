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

#[test]
fn each_part_of_a_cost_is_rounded_up_on_its_own_like_the_ledgers_records() {
    // 1 prompt token at 1.25 and 1 completion token at 3.75 micro-dollars:
    // the ledger charges its two records 2 + 4, not ceil(5.0).
    assert_eq!(cost_micro_usd(1, 1, 1_250_000, 3_750_000), 6);
    assert_eq!(cost_micro_usd(0, 1, 1_250_000, 3_750_000), 4);
}

mod agreement_with_the_ledger {
    use nexus_swarm_runtime::resources::ResourceKind;
    use proptest::prelude::*;

    use super::*;
    use crate::cost_ledger::{MAX_MICRO_USD_PER_MILLION_TOKENS, PriceTable};

    /// What the ledger commits for a call's records: one per kind of
    /// token used (the gateway records no zero amounts).
    fn ledger_cost(prices: &PriceTable, model: &str, input: u64, output: u64) -> u64 {
        [(ResourceKind::InputTokens, input), (ResourceKind::OutputTokens, output)]
            .into_iter()
            .filter(|(_, amount)| *amount > 0)
            .map(|(kind, amount)| prices.cost(&kind, amount, Some(model)).unwrap())
            .sum()
    }

    fn price() -> impl Strategy<Value = u64> {
        prop_oneof![
            0..=MAX_MICRO_USD_PER_MILLION_TOKENS,
            // Prices of real models, where fractions of a micro-dollar per
            // token are the rule.
            (1u64..=200).prop_map(|n| n * 12_500),
            Just(150_000u64),
            Just(2_500_000u64),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn catalogue_and_ledger_price_the_same_usage_the_same(
            input in prop_oneof![0u64..64, 0u64..2_000_000],
            output in prop_oneof![0u64..64, 0u64..200_000],
            input_price in price(),
            output_price in price(),
        ) {
            let spec = ModelSpec::new("m", 4_000_000, input_price, output_price)
                .deployment(DeploymentSpec::new("m@p", "p"));
            // The ledger priced from the catalogue itself: one price book.
            let prices = PriceTable::from_catalogue(&ModelCatalogue::new(vec![spec.clone()]).unwrap()).unwrap();
            let ledger = ledger_cost(&prices, "m", input, output);
            prop_assert_eq!(spec.cost(input, output), ledger);
            prop_assert_eq!(cost_micro_usd(input, output, input_price, output_price), ledger);
            // The reservation prices the worst case the same way.
            prop_assert_eq!(spec.worst_cost(input, output), ledger);
        }
    }
}
