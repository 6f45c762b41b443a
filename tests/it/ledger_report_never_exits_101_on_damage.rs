//! Nothing in the CLI exits by panic on a damaged ledger: `nexus report` and
//! `nexus ledger verify` on copies of a ledger with a bit flipped at seeded
//! positions, or cut short, exit 0 with the intact output or 1 (damage),
//! never 101, and print no panic message.

use crate::support::ledger_fixture as fixture;

use fixture::nexus;

use nexus_swarm::actors::cost_ledger::STORE_FILE;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEED: u64 = 0x0101_dead;
const DAMAGED_COPIES: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_ledgers_exit_0_with_the_intact_report_or_1() {
    let dir = tempfile::tempdir().unwrap();
    fixture::write_ledger(dir.path(), 200).await;
    let report_args = ["report", "--format", "csv", "--group-by", "day,tenant,model"];
    let intact = nexus(&report_args, dir.path());
    assert!(intact.status.success());
    let bytes = std::fs::read(dir.path().join(STORE_FILE)).unwrap();
    let data_pages: Vec<usize> = (0..bytes.len() / 4096)
        .filter(|p| bytes[p * 4096..(p + 1) * 4096].iter().any(|b| *b != 0))
        .collect();

    let mut rng = StdRng::seed_from_u64(SEED);
    let scratch = tempfile::tempdir().unwrap();
    for i in 0..DAMAGED_COPIES {
        let mut damaged = bytes.clone();
        if i % 8 == 7 {
            damaged.truncate(rng.random_range(1..bytes.len()));
        } else {
            let page = data_pages[rng.random_range(0..data_pages.len())];
            damaged[page * 4096 + rng.random_range(0..4096)] ^= 1 << rng.random_range(0..8);
        }
        std::fs::write(scratch.path().join(STORE_FILE), &damaged).unwrap();
        for (args, intact_out) in [
            (&report_args[..], Some(&intact.stdout)),
            (&["ledger", "verify"][..], None),
        ] {
            let out = nexus(args, scratch.path());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !stderr.contains("panicked"),
                "copy {i}: {args:?} printed a panic: {stderr}"
            );
            match out.status.code() {
                Some(0) => {
                    if let Some(expected) = intact_out {
                        assert_eq!(&out.stdout, expected, "copy {i}: exit 0 with another report");
                    }
                }
                Some(1) => assert!(
                    stderr.contains("corrupt") || String::from_utf8_lossy(&out.stdout).contains("DAMAGED"),
                    "copy {i}: {stderr}"
                ),
                code => panic!("copy {i}: {args:?} exited {code:?}: {stderr}"),
            }
        }
    }
}
