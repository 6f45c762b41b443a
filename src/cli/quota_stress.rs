//! `nexus quota-stress` (hidden): starts a quota keeper from a
//! configuration (its quotas defined, their usage kept under
//! `node.data_dir`), then charges one quota `--amount` at a time, writing
//! the usage to the store after each charge and printing the quota's usage
//! on stdout, one number per line, only once it is written. The crash test
//! kills the process with SIGKILL and checks that a new keeper on the same
//! directory resumes the last printed usage.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::actors::quota_keeper::{QuotaError, QuotaKeeper, QuotaKeeperArgs};
use crate::runtime::config::NexusConfig;

/// `nexus quota-stress ...`
#[derive(Debug, Args)]
pub struct QuotaStressArgs {
    /// The configuration: its `[[quotas.quotas]]` and `node.data_dir`.
    #[arg(long)]
    pub config: PathBuf,
    /// The quota to charge.
    #[arg(long)]
    pub quota: String,
    /// Units per charge.
    #[arg(long, default_value_t = 1)]
    pub amount: u64,
}

/// Runs the charge loop until the quota is exhausted (exit 0) or the
/// process is killed.
pub fn run(args: QuotaStressArgs) -> anyhow::Result<ExitCode> {
    let config = NexusConfig::from_file(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let keeper_args = QuotaKeeperArgs::from_config(&config)?;
        let (quotas, join) = QuotaKeeper::spawn_unsupervised(keeper_args).await?;
        loop {
            match quotas.try_consume(&args.quota, args.amount) {
                Ok(_receipt) => {}
                Err(QuotaError::Exhausted { .. }) => break,
                Err(e) => return Err(e.into()),
            }
            quotas.flush().await?;
            let used = quotas.report(&args.quota)?.current;
            // Stdout closed means the test stopped listening; keep going until killed.
            let _ = writeln!(std::io::stdout().lock(), "{used}");
        }
        eprintln!("quota-stress: {} is exhausted", args.quota);
        if let Some(actor) = quotas.actor() {
            actor.stop(None);
        }
        join.await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
