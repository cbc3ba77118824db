//! Where an agent's time goes: its debug log in JSON carries a wall-clock timestamp (µs) on
//! every event, so each event's offset from the spawn places a phase of the run, named after
//! the event that ends it (a repeated event is numbered: `kernel state read #2`). Medians of
//! the offsets over the runs, in the order of those medians; an event missing from some runs
//! says in how many it was seen.

use crate::netns::Timed;
use std::collections::BTreeMap;

const DAY_US: u64 = 86_400_000_000;

/// The phases of several runs of one kind (fresh apply or re-apply).
#[derive(Default)]
pub struct Phases {
    /// Per event, its offset from the spawn in each run that logged it (µs).
    offsets: BTreeMap<String, Vec<u64>>,
    runs: usize,
}

impl Phases {
    /// Adds one debug-logged run.
    pub fn add(&mut self, run: &Timed) {
        let spawned = run.spawned_us % DAY_US;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (at, label) in run.stderr.lines().filter_map(event) {
            // Events logged just after midnight UTC.
            let at = if at < spawned { at + DAY_US } else { at };
            let n = seen.entry(label.clone()).or_default();
            *n += 1;
            let key = if *n == 1 {
                label
            } else {
                format!("{label} #{n}")
            };
            self.offsets
                .entry(key)
                .or_default()
                .push(at.saturating_sub(spawned));
        }
        let exit = run.took.as_micros() as u64;
        self.offsets.entry("exit".into()).or_default().push(exit);
        self.runs += 1;
    }

    pub fn print(&self, what: &str) {
        let mut rows: Vec<(f64, &String, usize)> = self
            .offsets
            .iter()
            .map(|(label, v)| (median(v), label, v.len()))
            .collect();
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        println!("  {what}: at (ms after spawn), phase (ms), event ending the phase");
        let mut previous = 0.0;
        for (at, label, seen) in rows {
            let note = if seen < self.runs {
                format!(" (in {seen} of {} runs)", self.runs)
            } else {
                String::new()
            };
            println!("    {at:>6.2}  {:>5.2}  {label}{note}", at - previous);
            previous = at;
        }
    }
}

fn median(v: &[u64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default() as f64 / 1000.0
}

/// `(µs of the day, first line of the message)` of one JSON log line.
fn event(line: &str) -> Option<(u64, String)> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let stamp = value["timestamp"].as_str()?;
    let message = value["fields"]["message"].as_str()?;
    let label = message.lines().next().unwrap_or_default().trim();
    Some((time_of_day_us(stamp)?, label.chars().take(48).collect()))
}

/// `2026-12-02T09:10:11.123456Z` -> µs since midnight.
fn time_of_day_us(stamp: &str) -> Option<u64> {
    let time = stamp.split_once('T')?.1.trim_end_matches('Z');
    let time = time.split(['+']).next()?;
    let mut parts = time.split(':');
    let hours: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let second = parts.next()?;
    let (seconds, fraction) = second.split_once('.').unwrap_or((second, "0"));
    let seconds: u64 = seconds.parse().ok()?;
    let digits: String = fraction.chars().chain("000000".chars()).take(6).collect();
    let micros: u64 = digits.parse().ok()?;
    Some(((hours * 60 + minutes) * 60 + seconds) * 1_000_000 + micros)
}
