//! `nexus spill-stress` (hidden): a one-worker pool whose low lane spills
//! to `--dir`. Its handler appends each number it handles to `--out`, one
//! per line, with one `write(2)` (so a SIGKILL keeps what was written).
//!
//! With its gate closed, it sends `--count` numbers from `--first` as low
//! messages with `try_send` (past the lane they go to disk), prints
//! `sent spilled=<n>`, then opens the gate. With `--pause-after K` the
//! handler stops for good (prints `paused`) at the K-th message it is
//! given, before writing it: the crash test kills it there. Without it,
//! the process waits until it has handled what it found on disk and what
//! it sent, and its spill is empty, prints
//! `drained unspilled=<n>` and exits. The crash test runs it twice over one
//! directory and checks that `--out` holds every number once, in order.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;

use crate::runtime::prelude::*;
use crate::runtime::spill::SpillConfig;

/// `nexus spill-stress ...`
#[derive(Debug, Args)]
pub struct SpillStressArgs {
    /// The spill directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// The file the handler appends handled numbers to.
    #[arg(long)]
    pub out: PathBuf,
    /// The first number to send.
    #[arg(long, default_value_t = 0)]
    pub first: u64,
    /// How many numbers to send.
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// The low lane's capacity.
    #[arg(long, default_value_t = 4)]
    pub capacity: usize,
    /// Stop handling at the K-th message given to the handler (counting
    /// from 0), before writing it.
    #[arg(long)]
    pub pause_after: Option<u64>,
}

struct Recorder {
    out: PathBuf,
    gate: watch::Receiver<bool>,
    given: AtomicU64,
    pause_after: Option<u64>,
}

impl Agent for Recorder {
    type Msg = u64;
    type State = std::fs::File;

    async fn init(&self, _: &AgentContext<u64>) -> Result<std::fs::File, HandlerError> {
        Ok(std::fs::OpenOptions::new().create(true).append(true).open(&self.out)?)
    }

    async fn handle(&self, _: &AgentContext<u64>, n: u64, out: &mut std::fs::File) -> Result<(), HandlerError> {
        let mut gate = self.gate.clone();
        gate.wait_for(|open| *open).await?;
        let given = self.given.fetch_add(1, Ordering::SeqCst);
        if self.pause_after == Some(given) {
            println!("paused");
            std::future::pending::<()>().await;
        }
        out.write_all(format!("{n}\n").as_bytes())?;
        Ok(())
    }
}

/// Runs until drained (exit 0) or killed.
pub fn run(args: SpillStressArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let node = Node::start(NexusConfig::default()).await?;
        let (open, gate) = watch::channel(false);
        let recorder = Recorder {
            out: args.out.clone(),
            gate,
            given: AtomicU64::new(0),
            pause_after: args.pause_after,
        };
        let mut mailbox = MailboxConfig::default();
        mailbox.low.capacity = args.capacity;
        let pool = node
            .spawn_spilling_pool(
                "spill-stress",
                1,
                recorder,
                SpawnOptions::new().mailbox(mailbox),
                SpillConfig::new(&args.dir).max_bytes(64 << 20),
            )
            .await?;
        // Left on disk by an earlier run: handled here before what is sent.
        let left = pool.spill_stats().map_or(0, |s| s.on_disk);
        for n in args.first..args.first + args.count {
            pool.try_send(n, Priority::Low)
                .map_err(|e| anyhow::anyhow!("message {n} refused: {e}"))?;
        }
        let spilled = pool.spill_stats().map_or(0, |s| s.spilled);
        println!("sent spilled={spilled}");
        open.send_replace(true);
        if args.pause_after.is_some() {
            // The handler pauses for good: wait to be killed.
            std::future::pending::<()>().await;
        }
        loop {
            let stats = pool.spill_stats().unwrap_or_default();
            if stats.on_disk == 0 && pool.handled() >= left + args.count {
                println!("drained unspilled={}", stats.unspilled);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        node.shutdown(Duration::from_secs(10)).await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
