//! The monitor's exports hold what was sampled, in formats a reader takes:
//! the Prometheus text passes a strict line-format check, the CSV has a
//! header and one row per kept sample, the JSON parses; and the history
//! keeps only its bound.

use crate::support::scaling;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nexus_swarm::actors::monitor::ExportFormat;
use nexus_swarm::actors::monitor::export::{CSV_POOL_COLUMNS, CSV_SYSTEM_COLUMNS};
use nexus_swarm::actors::swarm::Swarm;
use scaling::{Worker, config, drive, settle};

/// A metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*` (labels without `:`).
fn is_name(s: &str, colon: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || (!first && c.is_ascii_digit())
    };
    let mut chars = s.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

/// Parses `{k="v",...}`; the rest after it.
fn labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut out = BTreeMap::new();
    s = s.strip_prefix('{').ok_or("no {")?;
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((out, rest));
        }
        let eq = s.find('=').ok_or("label without =")?;
        let key = &s[..eq];
        if !is_name(key, false) {
            return Err(format!("bad label name {key:?}"));
        }
        s = s[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (i, '"') => break i,
                (_, '\n') => return Err("newline in label value".into()),
                (_, c) => value.push(c),
            }
        };
        out.insert(key.to_string(), value);
        s = &s[end + 1..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// One sample line: its name, labels and value.
type PromSample = (String, BTreeMap<String, String>, f64);

/// Checks the text exposition format line by line; answers each sample.
fn parse_prometheus(text: &str) -> Result<Vec<PromSample>, String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = BTreeSet::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, tail) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if !is_name(name, true) {
                return Err(at(format!("bad name {name:?}")));
            }
            match kw {
                Some("HELP") if helped.insert(name.to_string()) && !tail.is_empty() => {}
                Some("TYPE")
                    if ["counter", "gauge", "summary", "histogram", "untyped"].contains(&tail)
                        && types.insert(name.to_string(), tail.to_string()).is_none() => {}
                _ => return Err(at("bad or repeated comment".into())),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(at(format!("bad name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?;
        let value: f64 = value.parse().map_err(|e| at(format!("value: {e}")))?;
        let family = ["_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "summary"))
            })
            .unwrap_or(name);
        let kind = types.get(family).ok_or_else(|| at("sample before its # TYPE".into()))?;
        if kind == "counter" && !name.ends_with("_total") {
            return Err(at("a counter not named _total".into()));
        }
        samples.push((name.to_string(), labels, value));
    }
    Ok(samples)
}

#[tokio::test(start_paused = true)]
async fn exports_parse_and_the_history_keeps_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), 16_000);
    config.scaling.enabled = false;
    config.monitor.history = 5;
    config.monitor.minutes = 2;
    let swarm = Swarm::start(config).await.unwrap();
    let monitor = swarm.monitor().unwrap().clone();
    // A pool name a CSV cell and a label value must quote.
    let (worker, handled) = Worker::new(100);
    let pool = swarm.spawn_pool("odd \"pool\", one", 2, worker).await.unwrap();
    // A tool subprocess, and this process registered again under a label.
    let mut tool = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    monitor.register_process(tool.id(), "tool");
    monitor.register_process(std::process::id(), "me again");

    let load = drive(&pool, Duration::from_secs(200), |_| 10);
    let sent = load.await.unwrap();
    settle(&handled, sent).await;
    tokio::time::sleep(Duration::from_secs(15)).await;

    // 20 ticks in 215 s; 5 kept; 2 minutes kept (the last under way).
    let taken = monitor.samples_taken();
    assert!(taken >= 20, "{taken}");
    let history = monitor.history();
    assert_eq!(history.len(), 5);
    assert_eq!(history.last().unwrap().seq, taken - 1);
    let minutes = monitor.minutes();
    assert_eq!(minutes.len(), 2);
    assert_eq!(minutes[0].samples, 6, "a full minute at 10 s");

    let text = monitor.export(ExportFormat::Prometheus);
    let samples = parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let find = |name: &str, label: Option<(&str, &str)>| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && label.is_none_or(|(k, v)| l.get(k).is_some_and(|x| x == v)))
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("{name} {label:?} missing:\n{text}"))
    };
    let pool_label = Some(("pool", "odd \"pool\", one"));
    assert_eq!(find("nexus_monitor_samples_total", None), taken as f64);
    assert_eq!(find("nexus_pool_handled_total", pool_label), sent as f64);
    assert_eq!(
        find("nexus_pool_handler_latency_seconds_count", pool_label),
        sent as f64
    );
    assert_eq!(find("nexus_pool_workers", pool_label), 2.0);
    assert!(find("nexus_system_memory_total_bytes", None) > 0.0);
    assert!(find("nexus_process_resident_memory_bytes", Some(("label", "me again"))) > 0.0);
    assert!(find("nexus_process_resident_memory_bytes", Some(("label", "tool"))) > 0.0);
    assert!(find("nexus_process_resident_memory_bytes", Some(("label", "self"))) > 0.0);
    tool.kill().unwrap();
    tool.wait().unwrap();

    let csv = monitor.export(ExportFormat::Csv);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 5, "a header and one row per kept sample:\n{csv}");
    let header = lines[0];
    assert!(header.starts_with(&CSV_SYSTEM_COLUMNS.join(",")), "{header}");
    assert!(header.contains("\"odd \"\"pool\"\", one.handled\""), "{header}");
    let columns = CSV_SYSTEM_COLUMNS.len() + CSV_POOL_COLUMNS.len();
    for (row, sample) in lines[1..].iter().zip(&history) {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells.len(), columns, "{row}");
        assert_eq!(cells[0], sample.seq.to_string());
        assert!(cells.iter().all(|c| c.parse::<u64>().is_ok()), "{row}");
    }

    let json: serde_json::Value = serde_json::from_str(&monitor.export(ExportFormat::Json)).unwrap();
    assert_eq!(json["samples"].as_array().map(Vec::len), Some(5));
    assert_eq!(json["minutes"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["samples"][4]["seq"], taken - 1);
    assert_eq!(json["samples"][4]["pools"][0]["name"], "odd \"pool\", one");
    swarm.shutdown(Duration::from_secs(5)).await;
}
