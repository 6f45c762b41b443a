//! Three `nexus node` processes in network namespaces of the test's own
//! making, joined by a bridge in a fourth namespace (nothing in the host's
//! own namespace changes), so that a node can be cut off by taking its
//! link down. The test reaches each node's loopback HTTP API from a thread
//! moved into that node's namespace.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cluster::TIMEOUT;
use super::http::{http, json};
use super::nexus_cli::{Guard, NEXUS, lines_of};

/// The nodes' cluster port (each namespace has its own).
pub const PORT: u16 = 7000;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces and links; deleted on drop.
pub struct Net {
    pub nodes: Vec<String>,
    bridge: String,
    tag: String,
}

impl Net {
    /// Makes `count` node namespaces on 10.213.0.1.. and a bridge, or says
    /// why it cannot (not root, no `ip`, no namespaces).
    pub fn make(count: usize) -> Result<Net, String> {
        let uid = Command::new("id").arg("-u").output().map_err(|e| format!("id: {e}"))?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not running as root".into());
        }
        let tag = format!("{}", std::process::id() % 100_000);
        let bridge = format!("nxbr{tag}");
        let mut net = Net {
            nodes: Vec::new(),
            bridge: bridge.clone(),
            tag: tag.clone(),
        };
        ip(&["netns", "add", &bridge])?;
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bridge, "link", "set", "br0", "up"])?;
        for i in 0..count {
            let ns = format!("nx{i}n{tag}");
            ip(&["netns", "add", &ns])?;
            net.nodes.push(ns.clone());
            let (inner, outer) = (format!("nxv{i}i{tag}"), format!("nxv{i}o{tag}"));
            ip(&["link", "add", &inner, "type", "veth", "peer", "name", &outer])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &outer, "netns", &bridge])?;
            ip(&["-n", &bridge, "link", "set", &outer, "master", "br0"])?;
            ip(&["-n", &bridge, "link", "set", &outer, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.213.0.{}/24", i + 1),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Node `i`'s cluster address.
    pub fn addr(&self, i: usize) -> String {
        format!("10.213.0.{}:{PORT}", i + 1)
    }

    /// Cuts node `i` off (`up = false`) or heals it.
    pub fn link(&self, i: usize, up: bool) {
        let outer = format!("nxv{i}o{}", self.tag);
        ip(&[
            "-n",
            &self.bridge,
            "link",
            "set",
            &outer,
            if up { "up" } else { "down" },
        ])
        .unwrap();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its links; a failure leaves nothing
        // the next run collides with (names carry the process id).
        for ns in self.nodes.iter().chain(std::iter::once(&self.bridge)) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Runs `f` on a thread moved into namespace `ns`.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// A `nexus node` in a namespace.
pub struct NsNode {
    pub ns: String,
    pub name: String,
    pub guard: Guard,
    pub http: String,
    pub events: Receiver<String>,
}

impl NsNode {
    /// Starts node `name` in `net`'s namespace `i`, joining `join`.
    pub fn start(net: &Net, i: usize, dir: &Path, cookie: &Path, config: &Path, join: &[String]) -> NsNode {
        let ns = net.nodes[i].clone();
        let name = format!("n{}", i + 1);
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &ns,
            NEXUS,
            "node",
            "--name",
            &name,
            "--listen",
            &net.addr(i),
        ])
        .args(["--http", "127.0.0.1:0", "--cookie-file"])
        .arg(cookie)
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(dir.join(&name));
        for peer in join {
            cmd.args(["--join", peer]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let events = lines_of(child.stdout.take().unwrap());
        let guard = Guard(Some(child));
        let first: Value = serde_json::from_str(&events.recv_timeout(TIMEOUT).expect("node starts")).unwrap();
        NsNode {
            ns,
            name,
            guard,
            http: first["http"].as_str().unwrap().to_string(),
            events,
        }
    }

    fn request(&self, method: &'static str, path: String, body: Option<String>) -> (u16, Value) {
        let addr = self.http.clone();
        let (code, text) = in_ns(&self.ns, move || http(&addr, method, &path, None, body.as_deref()));
        (code, json(&text))
    }

    /// `GET /cluster`.
    pub fn status(&self) -> Value {
        self.request("GET", "/cluster".into(), None).1
    }

    /// The owners of `keys`.
    pub fn owners(&self, keys: &[String]) -> Vec<String> {
        let (_, v) = self.request("GET", format!("/cluster/owners?keys={}", keys.join(",")), None);
        serde_json::from_value(v["owners"].clone()).unwrap()
    }

    /// `POST /cluster/send?key=key`.
    pub fn send(&self, key: &str, body: &str) -> (u16, Value) {
        self.request("POST", format!("/cluster/send?key={key}"), Some(body.to_string()))
    }

    /// `GET /cluster/limits`: the limit `name` as this node sees it.
    pub fn limit(&self, name: &str) -> Value {
        let (_, v) = self.request("GET", "/cluster/limits".into(), None);
        v["limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("{} has no limit {name}: {v}", self.name))
            .clone()
    }

    /// `POST /cluster/limits/spend`: (status, answer).
    pub fn spend(&self, name: &str, units: u64) -> (u16, Value) {
        self.request("POST", format!("/cluster/limits/spend?name={name}&units={units}"), None)
    }

    /// Waits until the members are `expected`.
    pub fn wait_members(&self, expected: &[&str]) {
        let start = Instant::now();
        loop {
            let members: Vec<String> = serde_json::from_value(self.status()["members"].clone()).unwrap();
            if members == expected {
                return;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "{} sees {members:?}, not {expected:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
