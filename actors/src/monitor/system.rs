//! [`SystemProbe`]: the machine, this process and registered processes,
//! read with `sysinfo`.
//!
//! Each read refreshes only what a sample holds: global CPU use, memory,
//! the disks' space, the network counters, and the watched processes'
//! CPU and resident memory (never the whole process table). CPU use is a
//! difference between two reads, so the first sample's CPU figures are 0.

use std::collections::BTreeMap;
use std::sync::Arc;

use sysinfo::{Disks, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::sample::{ProcessSample, SystemMetrics};

/// Reads the machine and the watched processes.
pub struct SystemProbe {
    system: System,
    disks: Disks,
    networks: Networks,
    me: Option<Pid>,
    registered: BTreeMap<u32, Arc<str>>,
}

impl std::fmt::Debug for SystemProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemProbe")
            .field("me", &self.me)
            .field("registered", &self.registered)
            .finish()
    }
}

impl Default for SystemProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemProbe {
    /// A probe of this machine and this process.
    pub fn new() -> Self {
        Self {
            system: System::new(),
            disks: Disks::new_with_refreshed_list(),
            networks: Networks::new_with_refreshed_list(),
            me: sysinfo::get_current_pid().ok(),
            registered: BTreeMap::new(),
        }
    }

    /// Watches process `pid` (a tool subprocess an agent started) under
    /// `label`; a second registration of a pid relabels it.
    pub fn register(&mut self, pid: u32, label: Arc<str>) {
        self.registered.insert(pid, label);
    }

    /// Stops watching `pid`; whether it was watched.
    pub fn unregister(&mut self, pid: u32) -> bool {
        self.registered.remove(&pid).is_some()
    }

    /// The machine now.
    pub fn system(&mut self) -> SystemMetrics {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        self.disks.refresh(true);
        self.networks.refresh(true);
        let (disk_total, disk_free) = self.disks.list().iter().fold((0u64, 0u64), |(t, a), d| {
            (t.saturating_add(d.total_space()), a.saturating_add(d.available_space()))
        });
        let (rx, tx) = self.networks.list().values().fold((0u64, 0u64), |(r, t), n| {
            (r.saturating_add(n.received()), t.saturating_add(n.transmitted()))
        });
        SystemMetrics {
            cpu_permille: percent_to_permille(self.system.global_cpu_usage()),
            memory_used_bytes: self.system.used_memory(),
            memory_total_bytes: self.system.total_memory(),
            disk_used_bytes: disk_total.saturating_sub(disk_free),
            disk_total_bytes: disk_total,
            net_rx_bytes: rx,
            net_tx_bytes: tx,
        }
    }

    /// This process (labelled `"self"`), then every registered one.
    pub fn processes(&mut self) -> Vec<ProcessSample> {
        // Each pid once: refreshing one twice in a call makes `sysinfo`
        // take it for gone.
        let pids: Vec<Pid> = self
            .me
            .into_iter()
            .chain(self.registered.keys().map(|&p| Pid::from_u32(p)))
            .collect::<std::collections::BTreeSet<Pid>>()
            .into_iter()
            .collect();
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let me = self.me.map(|pid| (pid, Arc::<str>::from("self")));
        let others = self
            .registered
            .iter()
            .map(|(&pid, label)| (Pid::from_u32(pid), Arc::clone(label)));
        me.into_iter()
            .chain(others)
            .map(|(pid, label)| match self.system.process(pid) {
                Some(p) => ProcessSample {
                    pid: pid.as_u32(),
                    label,
                    alive: true,
                    cpu_permille: percent_to_permille(p.cpu_usage()),
                    rss_bytes: p.memory(),
                },
                None => ProcessSample {
                    pid: pid.as_u32(),
                    label,
                    alive: false,
                    cpu_permille: 0,
                    rss_bytes: 0,
                },
            })
            .collect()
    }
}

/// A `sysinfo` percentage (a float) as integer permille, at the edge.
fn percent_to_permille(percent: f32) -> u32 {
    if percent.is_finite() && percent > 0.0 {
        // Saturating float-to-int conversion: a huge value reads as u32::MAX.
        (f64::from(percent) * 10.0).round() as u32
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine_and_this_process_and_marks_a_dead_pid() {
        let mut probe = SystemProbe::new();
        let s = probe.system();
        assert!(
            s.memory_total_bytes > 0 && s.memory_used_bytes <= s.memory_total_bytes,
            "{s:?}"
        );
        assert!(s.memory_permille() <= 1000);
        // A pid above Linux's maximum (2^22) is never running.
        probe.register(5_000_000, Arc::from("tool"));
        let ps = probe.processes();
        assert_eq!(ps.len(), 2, "{ps:?}");
        assert_eq!((&*ps[0].label, ps[0].alive), ("self", true));
        assert!(ps[0].rss_bytes > 0);
        assert_eq!((ps[1].pid, ps[1].alive, ps[1].rss_bytes), (5_000_000, false, 0));
        assert!(probe.unregister(5_000_000));
        assert_eq!(probe.processes().len(), 1);
    }

    #[test]
    fn percentages_become_permille_and_nonsense_becomes_zero() {
        assert_eq!(percent_to_permille(12.34), 123);
        assert_eq!(percent_to_permille(f32::NAN), 0);
        assert_eq!(percent_to_permille(-3.0), 0);
        assert_eq!(percent_to_permille(250.0), 2500);
    }
}
