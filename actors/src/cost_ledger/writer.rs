//! The ledger's single writer: group commit.
//!
//! Handles queue write jobs on a bounded channel (a full channel makes
//! trackers wait: backpressure, not an unbounded backlog). The writer takes
//! the first job, then every append already queued, up to
//! `group_commit_max` records, and commits them in one transaction on a
//! blocking thread; the jobs that arrive meanwhile form the next batch. So
//! under load one fsync serves many records, and when idle a record is
//! committed alone at once. Each job is answered only after its commit.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::budget::Budget;
use super::error::LedgerError;
use super::gate::{BudgetBook, Charges};
use super::pricing::PriceTable;
use super::record::{Ack, NewRecord};
use super::store::{CompactionStats, LedgerStore};

/// Spend charged in flight by tracked records, uncharged when dropped
/// unless the writer has taken it (so a cancelled caller leaks nothing).
#[derive(Debug)]
pub(crate) struct ChargeGuard {
    book: Arc<BudgetBook>,
    charges: Option<Charges>,
}

impl ChargeGuard {
    pub(crate) fn new(book: Arc<BudgetBook>, charges: Charges) -> Self {
        Self {
            book,
            charges: Some(charges),
        }
    }

    fn take(mut self) -> Charges {
        self.charges.take().unwrap_or_default()
    }
}

impl Drop for ChargeGuard {
    fn drop(&mut self) {
        if let Some(charges) = self.charges.take() {
            self.book.uncharge(charges);
        }
    }
}

/// A reply to a write job.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, LedgerError>>;

/// One unit of work for the writer.
#[derive(Debug)]
pub(crate) enum WriteJob {
    Append {
        records: Vec<NewRecord>,
        charges: ChargeGuard,
        reply: Reply<Vec<Ack>>,
    },
    PutBudget {
        budget: Budget,
        reply: Reply<()>,
    },
    RemoveBudget {
        id: String,
        reply: Reply<()>,
    },
    SetPrices {
        prices: PriceTable,
        reply: Reply<()>,
    },
    Compact {
        before_us: u64,
        buckets_before_us: u64,
        reply: Reply<CompactionStats>,
    },
}

/// Records compacted per transaction.
const COMPACTION_CHUNK: usize = 10_000;

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, LedgerError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(LedgerError::task_failed("writing", e)))
}

/// Runs until every sender is gone and the queue is drained.
pub(crate) async fn run(
    store: Arc<dyn LedgerStore>,
    book: Arc<BudgetBook>,
    mut rx: mpsc::Receiver<WriteJob>,
    group_commit_max: usize,
) {
    let mut next: Option<WriteJob> = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        match job {
            WriteJob::Append {
                records,
                charges,
                reply,
            } => {
                let mut count = records.len();
                let mut batch = vec![(records, charges, reply)];
                while count < group_commit_max {
                    match rx.try_recv() {
                        Ok(WriteJob::Append {
                            records,
                            charges,
                            reply,
                        }) => {
                            count += records.len();
                            batch.push((records, charges, reply));
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                commit(&store, &book, batch).await;
            }
            WriteJob::PutBudget { budget, reply } => {
                let _ = reply.send(put_budget(&store, &book, budget).await);
            }
            WriteJob::RemoveBudget { id, reply } => {
                let s = store.clone();
                let lookup = id.clone();
                let r = blocking(move || s.remove_budget(&lookup)).await.and_then(|existed| {
                    let installed = book.uninstall(&id);
                    if existed || installed {
                        Ok(())
                    } else {
                        Err(LedgerError::UnknownBudget(id))
                    }
                });
                let _ = reply.send(r);
            }
            WriteJob::SetPrices { prices, reply } => {
                let s = store.clone();
                let stored = prices.clone();
                let r = blocking(move || s.put_prices(&stored))
                    .await
                    .map(|()| book.set_prices(prices));
                let _ = reply.send(r);
            }
            WriteJob::Compact {
                before_us,
                buckets_before_us,
                reply,
            } => {
                let s = store.clone();
                let r = blocking(move || s.compact(before_us, buckets_before_us, COMPACTION_CHUNK)).await;
                let _ = reply.send(r);
            }
        }
    }
}

type Batch = Vec<(Vec<NewRecord>, ChargeGuard, Reply<Vec<Ack>>)>;

async fn commit(store: &Arc<dyn LedgerStore>, book: &Arc<BudgetBook>, batch: Batch) {
    let mut all = Vec::with_capacity(batch.iter().map(|b| b.0.len()).sum());
    let mut charges = Charges::new();
    let mut replies = Vec::with_capacity(batch.len());
    for (records, guard, reply) in batch {
        replies.push((records.len(), reply));
        all.extend(records);
        charges.extend(guard.take());
    }
    let (deltas, applied) = book.spend_of(&all);
    let s = store.clone();
    let result = tokio::task::spawn_blocking(move || {
        let r = s.append(&all, &deltas);
        (all, r)
    })
    .await;
    match result {
        Ok((all, Ok(ids))) => {
            book.apply_commit(applied, charges);
            let mut acks = all.iter().zip(ids).map(|(r, id)| Ack {
                id,
                at_us: r.at_us,
                cost_micro_usd: r.cost_micro_usd,
            });
            for (n, reply) in replies {
                // A caller that gave up still has its records committed.
                let _ = reply.send(Ok(acks.by_ref().take(n).collect()));
            }
        }
        Ok((_, Err(e))) => fail(book, charges, replies, e),
        Err(e) => fail(
            book,
            charges,
            replies,
            LedgerError::task_failed("committing a batch", e),
        ),
    }
}

fn fail(book: &BudgetBook, charges: Charges, replies: Vec<(usize, Reply<Vec<Ack>>)>, e: LedgerError) {
    tracing::error!(error = %e, "ledger commit failed; nothing in the batch was acknowledged");
    book.uncharge(charges);
    for (_, reply) in replies {
        let _ = reply.send(Err(e.clone()));
    }
}

async fn put_budget(store: &Arc<dyn LedgerStore>, book: &Arc<BudgetBook>, budget: Budget) -> Result<(), LedgerError> {
    let now = book.now_us();
    let s = store.clone();
    let b = budget.clone();
    let buckets = blocking(move || {
        let from = b.period.window_start(now);
        let mut sums = std::collections::BTreeMap::<u64, u64>::new();
        s.visit_usage(from, u64::MAX, &mut |row| {
            if b.scope.matches(&row.meta) {
                let e = sums.entry(b.period.bucket_start(row.at_us)).or_insert(0);
                *e = e.saturating_add(row.cost_micro_usd);
            }
            Ok(())
        })?;
        let buckets: Vec<(u64, u64)> = sums.into_iter().collect();
        s.put_budget(&b, &buckets)?;
        Ok(buckets)
    })
    .await?;
    book.install(budget, buckets);
    Ok(())
}
