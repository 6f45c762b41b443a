//! `nexus config check` reads at most 1 MiB (so `/dev/zero` is refused
//! naming the limit, not read until memory runs out), reads standard input
//! for `-`, and the defaults it prints are a file a user can append
//! `[[quotas.quotas]]` and `[[scheduler.pools]]` blocks to.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn nexus(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nexus");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    // The child may stop reading early (too large): a broken pipe is fine.
    let _ = pipe.write_all(stdin);
    drop(pipe);
    child.wait_with_output().expect("nexus exits")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_endless_file_is_refused_naming_the_limit() {
    let out = nexus(&["config", "check", "/dev/zero"], b"");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("1048576 bytes"), "{}", stderr(&out));
    let big = vec![b'#'; (1 << 20) + 10];
    let out = nexus(&["config", "check", "-"], &big);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("larger than the limit"), "{}", stderr(&out));
}

#[test]
fn a_dash_reads_standard_input() {
    let out = nexus(&["config", "check", "-"], b"[mailbox.high]\ncapacity = 64\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = nexus(&["config", "check", "-"], b"[mailbox.high]\ncapacity = 0\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("mailbox.high.capacity"), "{}", stderr(&out));
}

#[test]
fn the_printed_defaults_can_be_extended_with_quotas_and_pools() {
    let out = nexus(&["config", "defaults"], b"");
    assert!(out.status.success());
    let mut text = String::from_utf8(out.stdout).expect("UTF-8 defaults");
    text.push_str(
        "\n[[quotas.quotas]]\nid = \"system\"\nkind = \"input_tokens\"\nlimit = 90000\nperiod = \"1m\"\n\
         \n[[quotas.quotas]]\nid = \"acme\"\nparent = \"system\"\nkind = \"input_tokens\"\nlimit = 30000\n\
         selector = { tenant = \"acme\" }\n\
         \n[[scheduler.pools]]\nname = \"gpu\"\ncapacity = { gpu = 4 }\n",
    );
    let out = nexus(&["config", "check", "-"], text.as_bytes());
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
}
