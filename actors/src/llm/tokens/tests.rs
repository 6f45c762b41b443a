use proptest::prelude::*;

use super::*;

#[test]
fn counts_are_those_of_the_real_vocabulary() {
    let c = TokenCounter::new();
    // Reference counts of cl100k_base.
    assert_eq!(c.count("hello world"), 2);
    assert_eq!(c.count(""), 0);
    assert_eq!(c.count("tiktoken is great!"), 6);
    let chat = [Message::system("You are terse."), Message::user("hello world")];
    assert_eq!(c.count_messages(&chat), 4 + 4 + 4 + 2 + 3);
}

#[test]
fn pruning_keeps_system_and_latest_and_prefers_relevant_then_recent() {
    let c = TokenCounter::new();
    let msgs = vec![
        Message::system("You answer questions about invoices."),
        Message::user("What is the weather like in Paris today?"),
        Message::assistant("Sunny and mild in Paris."),
        Message::user("Invoice 42 shows a total of 300 euros for consulting."),
        Message::assistant("Noted, invoice 42 is for consulting."),
        Message::user("Which total does invoice 42 show?"),
    ];
    let all = c.count_messages(&msgs);
    let p = prune_context(&c, &msgs, all).unwrap();
    assert_eq!(p.messages, msgs);
    assert!(p.dropped.is_empty());
    assert_eq!(p.tokens, all);

    let must = c.count_messages(&[msgs[0].clone(), msgs[5].clone()]);
    let budget = must + c.count_message(&msgs[3]) + c.count_message(&msgs[4]);
    let p = prune_context(&c, &msgs, budget).unwrap();
    assert!(p.tokens <= budget);
    assert_eq!(p.dropped, vec![1, 2], "the Paris weather is irrelevant and older");
    assert_eq!(p.messages[0], msgs[0]);
    assert_eq!(p.messages.last(), msgs.last());
}

#[test]
fn a_budget_below_what_must_stay_is_a_typed_error() {
    let c = TokenCounter::new();
    let msgs = vec![Message::system("rules"), Message::user("question")];
    assert!(matches!(
        prune_context(&c, &msgs, 5),
        Err(PruneError::BudgetTooSmall { budget: 5, .. })
    ));
}

proptest! {
    #[test]
    fn pruned_context_fits_its_budget_and_keeps_order(
        texts in proptest::collection::vec("[a-z ]{0,40}", 1..12), extra in 0u64..200
    ) {
        let c = TokenCounter::new();
        let msgs: Vec<Message> = texts.iter().map(|t| Message::user(t.clone())).collect();
        let must = c.count_messages(&msgs[msgs.len() - 1..]);
        let p = prune_context(&c, &msgs, must + extra).unwrap();
        prop_assert!(p.tokens <= must + extra);
        prop_assert_eq!(p.tokens, c.count_messages(&p.messages));
        prop_assert_eq!(p.messages.last(), msgs.last());
        prop_assert_eq!(p.messages.len() + p.dropped.len(), msgs.len());
    }
}
