//! Exports: CSV (a header, then one row per sample) and the Prometheus
//! text exposition format (version 0.0.4) of the latest sample, the
//! counters and the handler latency summaries. JSON is the samples' and
//! minutes' `serde` form (see [`MonitorCore::json`](super::MonitorCore::json)).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::alerts::{Severity, Subject};
use super::sample::Sample;

/// Serializes a duration as whole milliseconds.
pub(crate) fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The columns of every row, before the pools' columns.
pub const CSV_SYSTEM_COLUMNS: [&str; 11] = [
    "seq",
    "at_ms",
    "cpu_permille",
    "memory_used_bytes",
    "memory_total_bytes",
    "disk_used_bytes",
    "disk_total_bytes",
    "net_rx_bytes",
    "net_tx_bytes",
    "process_cpu_permille",
    "process_rss_bytes",
];

/// Each pool's columns, as `<pool>.<column>`, pools in name order.
pub const CSV_POOL_COLUMNS: [&str; 9] = [
    "workers",
    "queued",
    "queue_permille",
    "handled",
    "errors",
    "throughput_milli",
    "latency_p50_us",
    "latency_p99_us",
    "queue_wait_ms",
];

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// The samples as CSV: a header naming every column, then one row per
/// sample (pools a sample lacks leave their cells empty).
pub fn csv<'a>(samples: impl IntoIterator<Item = &'a Sample> + Clone) -> String {
    let pools: BTreeSet<Arc<str>> = samples
        .clone()
        .into_iter()
        .flat_map(|s| s.pools.iter().map(|p| Arc::clone(&p.name)))
        .collect();
    let mut out = String::new();
    let mut header: Vec<String> = CSV_SYSTEM_COLUMNS.iter().map(|c| c.to_string()).collect();
    for p in &pools {
        header.extend(CSV_POOL_COLUMNS.iter().map(|c| format!("{p}.{c}")));
    }
    for (i, h) in header.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&mut out, h);
    }
    out.push('\n');
    for s in samples {
        let me = s.processes.iter().find(|p| &*p.label == "self");
        let sys = &s.system;
        let mut cells: Vec<String> = [
            s.seq,
            u64::try_from(s.at.as_millis()).unwrap_or(u64::MAX),
            u64::from(sys.cpu_permille),
            sys.memory_used_bytes,
            sys.memory_total_bytes,
            sys.disk_used_bytes,
            sys.disk_total_bytes,
            sys.net_rx_bytes,
            sys.net_tx_bytes,
            me.map_or(0, |p| u64::from(p.cpu_permille)),
            me.map_or(0, |p| p.rss_bytes),
        ]
        .iter()
        .map(u64::to_string)
        .collect();
        for name in &pools {
            match s.pools.iter().find(|p| &p.name == name) {
                Some(p) => cells.extend(
                    [
                        u64::from(p.workers),
                        p.depths.iter().sum(),
                        u64::from(p.queue_permille),
                        p.handled,
                        p.errors,
                        p.throughput_milli,
                        p.latency_p50_us,
                        p.latency_p99_us,
                        p.queue_wait_ms,
                    ]
                    .iter()
                    .map(u64::to_string),
                ),
                None => cells.extend(std::iter::repeat_n(String::new(), CSV_POOL_COLUMNS.len())),
            }
        }
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// What the Prometheus export shows beyond the latest sample.
#[derive(Debug)]
pub struct PromInput<'a> {
    /// The latest sample.
    pub latest: Option<&'a Sample>,
    /// Samples taken so far.
    pub samples: u64,
    /// Per pool: name, handled and errors since watched, latencies since watched.
    pub pools: Vec<(&'a str, u64, u64, &'a Histogram<u64>)>,
    /// Alerts raised and cleared so far.
    pub alerts: (u64, u64),
    /// The alerts standing.
    pub active: Vec<(&'a Subject, Severity)>,
}

/// Writes metric families: `# HELP` and `# TYPE` once per name, then its
/// samples.
struct Prom {
    out: String,
}

impl Prom {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A ratio in permille as a float in 0..=1 (and above), for Prometheus.
fn ratio(permille: u32) -> f64 {
    f64::from(permille) / 1000.0
}

/// The Prometheus text exposition of `input`.
pub fn prometheus(input: &PromInput<'_>) -> String {
    let mut p = Prom { out: String::new() };
    p.one(
        "nexus_monitor_samples_total",
        "counter",
        "Samples the monitor has taken.",
        input.samples,
    );
    p.one(
        "nexus_monitor_alerts_raised_total",
        "counter",
        "Alerts raised (a subject crossing a threshold from no alert).",
        input.alerts.0,
    );
    p.one(
        "nexus_monitor_alerts_cleared_total",
        "counter",
        "Alerts cleared (a subject back below the warning threshold by the hysteresis).",
        input.alerts.1,
    );
    p.family(
        "nexus_monitor_alert",
        "gauge",
        "1 for each alert standing, by subject and severity.",
    );
    for (subject, severity) in &input.active {
        let subject = subject.to_string();
        let severity = severity.to_string();
        p.sample(
            "nexus_monitor_alert",
            &[("subject", &subject), ("severity", &severity)],
            1,
        );
    }
    if let Some(s) = input.latest {
        let sys = &s.system;
        p.one(
            "nexus_system_cpu_ratio",
            "gauge",
            "CPU use of the machine, every core together (0 to 1).",
            ratio(sys.cpu_permille),
        );
        p.one(
            "nexus_system_memory_used_bytes",
            "gauge",
            "Memory in use.",
            sys.memory_used_bytes,
        );
        p.one(
            "nexus_system_memory_total_bytes",
            "gauge",
            "Memory installed.",
            sys.memory_total_bytes,
        );
        p.one(
            "nexus_system_disk_used_bytes",
            "gauge",
            "Space used on the mounted disks.",
            sys.disk_used_bytes,
        );
        p.one(
            "nexus_system_disk_total_bytes",
            "gauge",
            "Space of the mounted disks.",
            sys.disk_total_bytes,
        );
        p.one(
            "nexus_system_network_receive_bytes",
            "gauge",
            "Bytes received on every interface in the last interval.",
            sys.net_rx_bytes,
        );
        p.one(
            "nexus_system_network_transmit_bytes",
            "gauge",
            "Bytes sent on every interface in the last interval.",
            sys.net_tx_bytes,
        );
        p.family(
            "nexus_process_cpu_ratio",
            "gauge",
            "CPU use of a process in the last interval, in cores.",
        );
        for pr in &s.processes {
            let pid = pr.pid.to_string();
            p.sample(
                "nexus_process_cpu_ratio",
                &[("pid", &pid), ("label", &pr.label)],
                ratio(pr.cpu_permille),
            );
        }
        p.family(
            "nexus_process_resident_memory_bytes",
            "gauge",
            "Resident memory of a process.",
        );
        for pr in &s.processes {
            let pid = pr.pid.to_string();
            p.sample(
                "nexus_process_resident_memory_bytes",
                &[("pid", &pid), ("label", &pr.label)],
                pr.rss_bytes,
            );
        }
        p.family("nexus_pool_workers", "gauge", "Workers taking messages.");
        for ps in &s.pools {
            p.sample("nexus_pool_workers", &[("pool", &ps.name)], ps.workers);
        }
        p.family(
            "nexus_pool_queue_depth",
            "gauge",
            "Messages admitted and not yet taken, per lane.",
        );
        for ps in &s.pools {
            for (lane, d) in ["high", "normal", "low"].iter().zip(ps.depths) {
                p.sample("nexus_pool_queue_depth", &[("pool", &ps.name), ("lane", lane)], d);
            }
        }
        p.family(
            "nexus_pool_queue_capacity",
            "gauge",
            "Lane capacity, every worker together.",
        );
        for ps in &s.pools {
            for (lane, c) in ["high", "normal", "low"].iter().zip(ps.capacities) {
                p.sample("nexus_pool_queue_capacity", &[("pool", &ps.name), ("lane", lane)], c);
            }
        }
        p.family(
            "nexus_pool_restarts_total",
            "counter",
            "Worker restarts since the pool was spawned.",
        );
        for ps in &s.pools {
            p.sample("nexus_pool_restarts_total", &[("pool", &ps.name)], ps.restarts);
        }
        p.family(
            "nexus_pool_throughput_per_second",
            "gauge",
            "Messages handled per second over the last interval.",
        );
        for ps in &s.pools {
            p.sample(
                "nexus_pool_throughput_per_second",
                &[("pool", &ps.name)],
                ps.throughput_milli as f64 / 1000.0,
            );
        }
        p.family(
            "nexus_pool_queue_wait_seconds",
            "gauge",
            "Estimated wait of a message queued now (Little's law over the last interval).",
        );
        for ps in &s.pools {
            p.sample(
                "nexus_pool_queue_wait_seconds",
                &[("pool", &ps.name)],
                ps.queue_wait_ms as f64 / 1000.0,
            );
        }
    }
    p.family(
        "nexus_pool_handled_total",
        "counter",
        "Messages handled, counted from the pool's first sample (which counts what it handled before).",
    );
    for (name, handled, _, _) in &input.pools {
        p.sample("nexus_pool_handled_total", &[("pool", name)], handled);
    }
    p.family(
        "nexus_pool_errors_total",
        "counter",
        "Handler errors since the pool was watched.",
    );
    for (name, _, errors, _) in &input.pools {
        p.sample("nexus_pool_errors_total", &[("pool", name)], errors);
    }
    let latency = "nexus_pool_handler_latency_seconds";
    p.family(latency, "summary", "Handler latency since the pool was watched.");
    for (name, _, _, h) in &input.pools {
        for q in ["0.5", "0.9", "0.99"] {
            let v = h.value_at_quantile(q.parse().unwrap_or(0.5)) as f64 / 1e6;
            p.sample(latency, &[("pool", name), ("quantile", q)], v);
        }
        // The mean times the count: the histogram keeps no exact sum.
        p.sample(
            &format!("{latency}_sum"),
            &[("pool", name)],
            h.mean() * h.len() as f64 / 1e6,
        );
        p.sample(&format!("{latency}_count"), &[("pool", name)], h.len());
    }
    p.out
}
