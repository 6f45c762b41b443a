//! The floor: bare `ractor` actors, measured with the same harness as our
//! data plane.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;

/// Messages of the bare counting actor.
#[derive(Debug)]
pub(crate) enum RawMsg {
    /// Count one.
    Hit,
    /// Answer at once (a round trip).
    Ping(RpcReplyPort<()>),
}

impl ractor::Message for RawMsg {}

/// A bare ractor actor that counts `Hit`s and reports when it reaches a target.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawCounter;

/// State of [`RawCounter`].
#[derive(Debug)]
pub(crate) struct RawState {
    count: u64,
    target: u64,
    done: Option<oneshot::Sender<()>>,
}

impl Actor for RawCounter {
    type Msg = RawMsg;
    type State = RawState;
    type Arguments = (u64, Option<oneshot::Sender<()>>);

    async fn pre_start(
        &self,
        _myself: ActorRef<RawMsg>,
        (target, done): Self::Arguments,
    ) -> Result<RawState, ActorProcessingErr> {
        Ok(RawState { count: 0, target, done })
    }

    async fn handle(
        &self,
        _myself: ActorRef<RawMsg>,
        msg: RawMsg,
        st: &mut RawState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RawMsg::Hit => {
                st.count += 1;
                if st.count == st.target {
                    if let Some(done) = st.done.take() {
                        // The benchmark may have given up; nothing to report then.
                        let _ = done.send(());
                    }
                }
            }
            RawMsg::Ping(reply) => {
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

/// Casts `n` messages from one task to one bare actor; msgs/s until all handled.
pub(crate) async fn cast_throughput(n: u64) -> anyhow::Result<f64> {
    let (tx, rx) = oneshot::channel();
    let (actor, join) = Actor::spawn(None, RawCounter, (n, Some(tx))).await?;
    let started = Instant::now();
    for _ in 0..n {
        actor.cast(RawMsg::Hit)?;
    }
    rx.await?;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    actor.stop(None);
    join.await?;
    Ok(rate)
}

/// Sequential `call` round trips to one bare actor.
pub(crate) async fn call_latency(n: u64) -> anyhow::Result<Histogram<u64>> {
    let (actor, join) = Actor::spawn(None, RawCounter, (u64::MAX, None)).await?;
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
    let (actor, join) = Actor::spawn(None, RawCounter, (u64::MAX, None)).await?;
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
