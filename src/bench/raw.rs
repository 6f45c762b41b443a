//! The floor: bare `ractor` actors, measured with the same harness and the
//! same work per message as our data plane.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;

/// The work every counting benchmark does per message, ours and bare
/// alike: one relaxed increment of a counter shared by all consumers, and
/// a report when the target is reached. Sharing the same type keeps the
/// comparison like for like.
#[derive(Debug)]
pub(crate) struct Tally {
    /// Messages handled by every consumer together. Atomic: the consumers
    /// run on different threads and only the total matters.
    count: AtomicU64,
    target: u64,
    /// Taken once, by the consumer that handles the last message.
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl Tally {
    /// A tally that reports on the receiver when `target` messages were handled.
    pub(crate) fn new(target: u64) -> (Arc<Self>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let tally = Self {
            count: AtomicU64::new(0),
            target,
            done: Mutex::new(Some(tx)),
        };
        (Arc::new(tally), rx)
    }

    /// A tally that never reports (idle actors, latency probes).
    pub(crate) fn idle() -> Arc<Self> {
        Arc::new(Self {
            count: AtomicU64::new(0),
            target: u64::MAX,
            done: Mutex::new(None),
        })
    }

    /// Counts one message.
    #[inline]
    pub(crate) fn hit(&self) {
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            let done = self.done.lock().map(|mut d| d.take()).unwrap_or(None);
            if let Some(done) = done {
                // The benchmark may have given up; nothing to report then.
                let _ = done.send(());
            }
        }
    }
}

/// Messages of the bare counting actor.
#[derive(Debug)]
pub(crate) enum RawMsg {
    /// Count one.
    Hit,
    /// Answer at once (a round trip).
    Ping(RpcReplyPort<()>),
}

impl ractor::Message for RawMsg {}

/// A bare ractor actor that counts `Hit`s on a shared [`Tally`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawCounter;

impl Actor for RawCounter {
    type Msg = RawMsg;
    type State = Arc<Tally>;
    type Arguments = Arc<Tally>;

    async fn pre_start(&self, _myself: ActorRef<RawMsg>, tally: Arc<Tally>) -> Result<Arc<Tally>, ActorProcessingErr> {
        Ok(tally)
    }

    async fn handle(
        &self,
        _myself: ActorRef<RawMsg>,
        msg: RawMsg,
        tally: &mut Arc<Tally>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RawMsg::Hit => tally.hit(),
            RawMsg::Ping(reply) => {
                // The caller may have timed out; nothing to answer then.
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

/// Casts `n` messages from one task to one bare actor; msgs/s until all handled.
pub(crate) async fn cast_throughput(n: u64) -> anyhow::Result<f64> {
    pool_throughput(n, 1).await
}

/// Casts `n` messages from one task round-robin over `consumers` bare
/// actors sharing one tally; msgs/s until all are handled.
pub(crate) async fn pool_throughput(n: u64, consumers: usize) -> anyhow::Result<f64> {
    let (tally, done) = Tally::new(n);
    let mut actors = Vec::with_capacity(consumers);
    for _ in 0..consumers.max(1) {
        actors.push(Actor::spawn(None, RawCounter, Arc::clone(&tally)).await?);
    }
    let started = Instant::now();
    let mut next = 0;
    for _ in 0..n {
        actors[next].0.cast(RawMsg::Hit)?;
        next += 1;
        if next == actors.len() {
            next = 0;
        }
    }
    done.await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    for (actor, join) in actors {
        actor.stop(None);
        join.await?;
    }
    Ok(rate)
}

/// Sequential `call` round trips to one bare actor.
pub(crate) async fn call_latency(n: u64) -> anyhow::Result<Histogram<u64>> {
    let (actor, join) = Actor::spawn(None, RawCounter, Tally::idle()).await?;
    let mut hist = super::histogram();
    for _ in 0..n {
        let t = Instant::now();
        ractor::call!(actor, RawMsg::Ping)?;
        super::record(&mut hist, t.elapsed());
    }
    actor.stop(None);
    join.await?;
    Ok(hist)
}

/// Round trips to a bare actor while a producer floods its (unbounded,
/// unprioritized) mailbox with `flood` casts.
pub(crate) async fn ask_under_flood(flood: u64, asks: u64, gap: Duration) -> anyhow::Result<Histogram<u64>> {
    let (actor, join) = Actor::spawn(None, RawCounter, Tally::idle()).await?;
    let producer = {
        let actor = actor.clone();
        tokio::spawn(async move {
            for i in 0..flood {
                if actor.cast(RawMsg::Hit).is_err() {
                    break;
                }
                if i % 1024 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut hist = super::histogram();
    for _ in 0..asks {
        let t = Instant::now();
        ractor::call!(actor, RawMsg::Ping)?;
        super::record(&mut hist, t.elapsed());
        if producer.is_finished() {
            break;
        }
        tokio::time::sleep(gap).await;
    }
    producer.await?;
    actor.stop(None);
    join.await?;
    Ok(hist)
}
