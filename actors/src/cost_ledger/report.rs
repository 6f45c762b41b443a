//! Cost reports: totals grouped by any metadata field over any time range,
//! exported as JSON, CSV or a text table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::clock::{MICROS_PER_SEC, format_rfc3339};
use super::error::LedgerError;
use super::record::Field;
use super::store::UsageRow;
use nexus_swarm_runtime::scope::Scope;

/// A half-open time range `[from_us, to_us)` in microseconds since the epoch.
/// Compacted usage (daily aggregates) is counted by its whole UTC day: a
/// range whose bounds fall on day boundaries gives exact totals over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// Inclusive start.
    pub from_us: u64,
    /// Exclusive end.
    pub to_us: u64,
}

impl TimeRange {
    /// `[from_us, to_us)`; `from_us` must be before `to_us`.
    pub fn new(from_us: u64, to_us: u64) -> Result<Self, LedgerError> {
        if from_us >= to_us {
            let time = |at_us: u64| match format_rfc3339(at_us) {
                // Sub-second bounds keep their microseconds.
                Ok(_) if at_us % MICROS_PER_SEC != 0 => {
                    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_micros(at_us)).to_string()
                }
                Ok(t) => t,
                Err(_) => format!("{at_us} us since the Unix epoch (past the year 9999)"),
            };
            return Err(LedgerError::InvalidQuery(format!(
                "time range start {} is not before its end {}",
                time(from_us),
                time(to_us)
            )));
        }
        Ok(Self { from_us, to_us })
    }

    /// All time.
    pub fn all() -> Self {
        Self {
            from_us: 0,
            to_us: u64::MAX,
        }
    }

    /// The `span` before `now_us` (inclusive of `now_us`).
    pub fn last(span: Duration, now_us: u64) -> Self {
        let span = u64::try_from(span.as_micros()).unwrap_or(u64::MAX);
        Self {
            from_us: now_us.saturating_sub(span),
            to_us: now_us.saturating_add(1),
        }
    }

    /// Whether `at_us` is in the range.
    pub fn contains(&self, at_us: u64) -> bool {
        self.from_us <= at_us && at_us < self.to_us
    }
}

/// What a report covers and how it groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportQuery {
    /// The time range.
    pub range: TimeRange,
    /// Only usage in this scope (the empty scope: everything).
    pub filter: Scope,
    /// Grouping fields, outermost first (empty: one total row).
    pub group_by: Vec<Field>,
}

impl ReportQuery {
    /// Everything in `range`, ungrouped.
    pub fn new(range: TimeRange) -> Self {
        Self {
            range,
            filter: Scope::all(),
            group_by: Vec::new(),
        }
    }

    /// Builder-style: only usage in `scope`.
    pub fn filter(mut self, scope: Scope) -> Self {
        self.filter = scope;
        self
    }

    /// Builder-style: groups by these fields.
    pub fn group_by(mut self, fields: impl IntoIterator<Item = Field>) -> Self {
        self.group_by = fields.into_iter().collect();
        self
    }
}

/// One group of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRow {
    /// The group's values, one per grouping field (`-` for none).
    pub key: Vec<String>,
    /// Its cost in micro-dollars.
    pub cost_micro_usd: u64,
    /// Records it holds.
    pub records: u64,
    /// Amount used per kind, in each kind's unit.
    pub amounts: BTreeMap<String, u64>,
}

/// A cost report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Start of the range.
    pub from_us: u64,
    /// End of the range (exclusive).
    pub to_us: u64,
    /// The grouping fields.
    pub group_by: Vec<Field>,
    /// Total cost in micro-dollars.
    pub total_cost_micro_usd: u64,
    /// Total records.
    pub total_records: u64,
    /// Groups, most expensive first.
    pub rows: Vec<ReportRow>,
}

/// Builds a report from usage rows, one at a time.
#[derive(Debug)]
pub struct ReportBuilder {
    query: ReportQuery,
    groups: BTreeMap<Vec<String>, ReportRow>,
    total_cost: u64,
    total_records: u64,
}

impl ReportBuilder {
    /// A builder for `query`.
    pub fn new(query: ReportQuery) -> Self {
        Self {
            query,
            groups: BTreeMap::new(),
            total_cost: 0,
            total_records: 0,
        }
    }

    /// Adds a row if it is in the query's range and filter.
    pub fn add(&mut self, row: &UsageRow) -> Result<(), LedgerError> {
        if !self.query.range.contains(row.at_us) || !self.query.filter.matches(&row.meta) {
            return Ok(());
        }
        let key: Vec<String> = self
            .query
            .group_by
            .iter()
            .map(|f| f.value_of(row.at_us, &row.kind, &row.meta))
            .collect();
        let group = self.groups.entry(key.clone()).or_insert_with(|| ReportRow {
            key,
            cost_micro_usd: 0,
            records: 0,
            amounts: BTreeMap::new(),
        });
        group.cost_micro_usd = group
            .cost_micro_usd
            .checked_add(row.cost_micro_usd)
            .ok_or(LedgerError::Overflow)?;
        group.records += row.records;
        let amount = group.amounts.entry(row.kind.to_string()).or_insert(0);
        *amount = amount.saturating_add(row.amount);
        self.total_cost = self
            .total_cost
            .checked_add(row.cost_micro_usd)
            .ok_or(LedgerError::Overflow)?;
        self.total_records += row.records;
        Ok(())
    }

    /// The report.
    pub fn finish(self) -> Report {
        let mut rows: Vec<ReportRow> = self.groups.into_values().collect();
        rows.sort_by(|a, b| b.cost_micro_usd.cmp(&a.cost_micro_usd).then_with(|| a.key.cmp(&b.key)));
        Report {
            from_us: self.query.range.from_us,
            to_us: self.query.range.to_us,
            group_by: self.query.group_by,
            total_cost_micro_usd: self.total_cost,
            total_records: self.total_records,
            rows,
        }
    }
}

/// Micro-dollars as dollars with six decimals, without floats.
pub fn format_usd(micro_usd: u64) -> String {
    format!("{}.{:06}", micro_usd / 1_000_000, micro_usd % 1_000_000)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize")
    }

    fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.rows.iter().flat_map(|r| r.amounts.keys().cloned()).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// The report as CSV: the grouping fields, `cost_micro_usd`, `cost_usd`,
    /// `records`, then one column per resource kind.
    pub fn to_csv(&self) -> String {
        let kinds = self.kinds();
        let mut header: Vec<String> = self.group_by.iter().map(|f| f.to_string()).collect();
        header.extend(["cost_micro_usd", "cost_usd", "records"].map(String::from));
        header.extend(kinds.iter().cloned());
        let mut out = header.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(",");
        out.push('\n');
        for row in &self.rows {
            let mut cells: Vec<String> = row.key.iter().map(|k| csv_field(k)).collect();
            cells.push(row.cost_micro_usd.to_string());
            cells.push(format_usd(row.cost_micro_usd));
            cells.push(row.records.to_string());
            cells.extend(
                kinds
                    .iter()
                    .map(|k| row.amounts.get(k).copied().unwrap_or(0).to_string()),
            );
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    /// The report as an aligned text table with a total line, or
    /// [`LedgerError::TimeOutOfRange`] if a bound of its range (other than
    /// the open end `u64::MAX`) is past the year 9999.
    pub fn to_table(&self) -> Result<String, LedgerError> {
        let from = format_rfc3339(self.from_us)?;
        let to = if self.to_us == u64::MAX {
            "now".to_string()
        } else {
            format_rfc3339(self.to_us)?
        };
        let mut header: Vec<String> = self.group_by.iter().map(|f| f.to_string()).collect();
        header.extend(["cost_usd", "records"].map(String::from));
        let mut lines: Vec<Vec<String>> = vec![header];
        for row in &self.rows {
            let mut l = row.key.clone();
            l.push(format_usd(row.cost_micro_usd));
            l.push(row.records.to_string());
            lines.push(l);
        }
        let cols = lines[0].len();
        let widths: Vec<usize> = (0..cols)
            .map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        let _ = writeln!(out, "cost report {from} .. {to}");
        for l in &lines {
            let cells: Vec<String> = l.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        let _ = writeln!(
            out,
            "total: ${} over {} records",
            format_usd(self.total_cost_micro_usd),
            self.total_records
        );
        Ok(out)
    }
}
