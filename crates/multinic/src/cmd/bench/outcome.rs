//! One scale run's figures: what it read from the controller's `/proc` entries, and the table
//! that prints them side by side.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// One run's figures.
pub(super) struct Outcome {
    pub(super) nodes: usize,
    pub(super) ready_after: Duration,
    pub(super) requests: BTreeMap<(String, String), u64>,
    pub(super) peak_rss_kib: u64,
    pub(super) cpu_seconds: f64,
    pub(super) sim_cpu_seconds: f64,
}

/// `VmHWM` (peak resident set) of a process, in KiB.
pub(super) fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU time of a process so far (`/proc/<pid>/stat` fields 14 and 15).
pub(super) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(ticks / 100.0)
}

const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

pub(super) fn print_table(outcomes: &[Outcome], markdown: bool) {
    let mut keys: Vec<(String, String)> = outcomes
        .iter()
        .flat_map(|o| o.requests.keys().cloned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    keys.sort();
    let header: Vec<String> = outcomes
        .iter()
        .map(|o| format!("N = {}", o.nodes))
        .collect();
    let mut rows: Vec<(String, Vec<String>)> = vec![
        (
            "time until all Ready".into(),
            outcomes
                .iter()
                .map(|o| format!("{:.1} s", o.ready_after.as_secs_f64()))
                .collect(),
        ),
        (
            "Ready per second".into(),
            outcomes
                .iter()
                .map(|o| format!("{:.0}", o.nodes as f64 / o.ready_after.as_secs_f64()))
                .collect(),
        ),
        (
            "controller peak RSS (VmHWM)".into(),
            outcomes
                .iter()
                .map(|o| format!("{:.1} MiB", o.peak_rss_kib as f64 / 1024.0))
                .collect(),
        ),
        (
            "controller CPU time (user+system)".into(),
            outcomes
                .iter()
                .map(|o| format!("{:.1} s", o.cpu_seconds))
                .collect(),
        ),
        (
            "simulator + bench CPU time (same window)".into(),
            outcomes
                .iter()
                .map(|o| format!("{:.1} s", o.sim_cpu_seconds))
                .collect(),
        ),
        (
            "API writes per resource".into(),
            outcomes
                .iter()
                .map(|o| {
                    let writes: u64 = o
                        .requests
                        .iter()
                        .filter(|((verb, _), _)| WRITE_VERBS.contains(&verb.as_str()))
                        .map(|(_, n)| n)
                        .sum();
                    format!("{:.2}", writes as f64 / o.nodes as f64)
                })
                .collect(),
        ),
    ];
    for key in &keys {
        rows.push((
            format!("{} {} per resource", key.0, key.1),
            outcomes
                .iter()
                .map(|o| {
                    format!(
                        "{:.3}",
                        *o.requests.get(key).unwrap_or(&0) as f64 / o.nodes as f64
                    )
                })
                .collect(),
        ));
    }
    if markdown {
        println!("| measure | {} |", header.join(" | "));
        println!("|---|{}", "---|".repeat(header.len()));
        for (name, cells) in rows {
            println!("| {name} | {} |", cells.join(" | "));
        }
    } else {
        println!(
            "{:<44} {}",
            "measure",
            header
                .iter()
                .map(|h| format!("{h:>12}"))
                .collect::<String>()
        );
        for (name, cells) in rows {
            println!(
                "{name:<44} {}",
                cells.iter().map(|c| format!("{c:>12}")).collect::<String>()
            );
        }
    }
}
