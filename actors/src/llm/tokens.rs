//! Token counting and context pruning.
//!
//! Counting uses a real BPE tokenizer: `tiktoken-rs`'s `cl100k_base`, whose
//! vocabulary ships inside the crate (no download at run time). Its counts
//! are exact for the GPT-3.5/4 family and close (within a few percent) for
//! other modern BPE vocabularies; providers report their own counts after a
//! call, which is what is billed and settled. A chat adds a fixed overhead
//! per message (role and separators) and for the reply's priming, as in
//! OpenAI's published formula.
//!
//! Pruning keeps a conversation within a token budget: system messages and
//! the latest message always stay; the others are ranked by relevance to
//! the latest message (share of their words that it also uses) and by
//! recency, and kept best-first while they fit, in their original order.

use std::collections::HashSet;

use super::types::{Message, Role};

/// Tokens added per chat message (role and separators).
pub const TOKENS_PER_MESSAGE: u64 = 4;
/// Tokens added once per chat for the reply's priming.
pub const TOKENS_PER_REPLY: u64 = 3;

/// Counts tokens with the `cl100k_base` BPE vocabulary.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenCounter;

impl TokenCounter {
    /// A counter (the vocabulary is loaded once per process, on first use).
    pub fn new() -> Self {
        TokenCounter
    }

    /// Tokens of a text.
    pub fn count(&self, text: &str) -> u64 {
        tiktoken_rs::cl100k_base_singleton().count_ordinary(text) as u64
    }

    /// Tokens of one chat message, overhead included.
    pub fn count_message(&self, m: &Message) -> u64 {
        TOKENS_PER_MESSAGE + self.count(&m.content)
    }

    /// Prompt tokens of a chat, overheads included.
    pub fn count_messages(&self, messages: &[Message]) -> u64 {
        messages.iter().map(|m| self.count_message(m)).sum::<u64>() + TOKENS_PER_REPLY
    }
}

/// A context cut down to a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// The messages kept, in their original order.
    pub messages: Vec<Message>,
    /// Indices (in the input) of the messages dropped.
    pub dropped: Vec<usize>,
    /// Prompt tokens of the kept messages.
    pub tokens: u64,
}

/// The messages that must stay do not fit the budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PruneError {
    /// System messages and the latest message alone need more.
    #[error("context needs at least {needed} tokens, budget is {budget}")]
    BudgetTooSmall {
        /// Tokens of what must stay.
        needed: u64,
        /// The budget.
        budget: u64,
    },
}

fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
        .map(str::to_lowercase)
        .collect()
}

/// Cuts `messages` to at most `budget` prompt tokens (overheads included).
///
/// Scores are integers: relevance (permille of the message's words that the
/// latest message also has) weighs 60 %, recency (permille of the position)
/// 40 %; ties keep the more recent.
pub fn prune_context(counter: &TokenCounter, messages: &[Message], budget: u64) -> Result<Pruned, PruneError> {
    let n = messages.len();
    let costs: Vec<u64> = messages.iter().map(|m| counter.count_message(m)).collect();
    let must = |i: usize| messages[i].role == Role::System || i + 1 == n;
    let mut used = TOKENS_PER_REPLY + (0..n).filter(|&i| must(i)).map(|i| costs[i]).sum::<u64>();
    if used > budget {
        return Err(PruneError::BudgetTooSmall { needed: used, budget });
    }
    let query = messages.last().map(|m| words(&m.content)).unwrap_or_default();
    let mut ranked: Vec<(u64, usize)> = (0..n)
        .filter(|&i| !must(i))
        .map(|i| {
            let w = words(&messages[i].content);
            let relevance = if w.is_empty() {
                0
            } else {
                w.iter().filter(|x| query.contains(*x)).count() as u64 * 1000 / w.len() as u64
            };
            let recency = (i as u64 + 1) * 1000 / n as u64;
            (relevance * 6 + recency * 4, i)
        })
        .collect();
    ranked.sort_by(|a, b| b.cmp(a));
    let mut keep = vec![false; n];
    for i in (0..n).filter(|&i| must(i)) {
        keep[i] = true;
    }
    for (_, i) in ranked {
        if used + costs[i] <= budget {
            used += costs[i];
            keep[i] = true;
        }
    }
    Ok(Pruned {
        messages: (0..n).filter(|&i| keep[i]).map(|i| messages[i].clone()).collect(),
        dropped: (0..n).filter(|&i| !keep[i]).collect(),
        tokens: used,
    })
}

#[cfg(test)]
mod tests;
