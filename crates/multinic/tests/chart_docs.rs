//! The operator documentation keeps up with the code: docs/operations.md explains every reason
//! a resource or an interface can report, and the chart's CRD is the generated one.

use multinic_api::{InterfaceReason, StateReason};
use std::path::Path;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows of the markdown table that follows `heading`, keyed by their first cell.
fn table_after(doc: &str, heading: &str) -> Vec<String> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/operations.md has no {heading:?}"));
    doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .filter_map(|l| l.split('|').nth(1))
        .map(|cell| cell.trim().trim_matches('`').to_string())
        .collect()
}

#[test]
fn every_state_reason_has_a_troubleshooting_row() {
    let doc = read("docs/operations.md");
    let rows = table_after(&doc, "### Resource reasons");
    let wanted: Vec<String> = StateReason::ALL.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        rows, wanted,
        "one row per StateReason, in declaration order"
    );
}

#[test]
fn every_interface_reason_has_a_troubleshooting_row() {
    let doc = read("docs/operations.md");
    let rows = table_after(&doc, "### Interface reasons");
    let wanted: Vec<String> = InterfaceReason::ALL.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        rows, wanted,
        "one row per InterfaceReason, in declaration order"
    );
}

#[test]
fn chart_crd_is_the_generated_one() {
    let chart = read("charts/multinic/crds/multinic.io_multinicnodeconfigs.yaml");
    assert_eq!(
        chart,
        read("deploy/crds/multinic.io_multinicnodeconfigs.yaml")
    );
    assert_eq!(
        chart,
        multinic_api::crd_yaml(),
        "regenerate with `multinic crd`"
    );
}
