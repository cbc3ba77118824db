//! Every rendered keyfile goes through NetworkManager's own parser and writer
//! (`nmcli --offline connection modify`, no daemon needed), which must accept it and keep every
//! key we wrote; NetworkManager silently drops keys and values it does not understand, so
//! "exit 0" alone would prove little. Fails (does not skip) when network-manager is missing.

mod common;

use multinic_netconf::{OsFlavor, RenderedFile, render};
use std::collections::BTreeMap;

type Keyfile = BTreeMap<(String, String), String>;

/// `(section, key) -> value` of a keyfile; comments and blank lines skipped.
fn parse_keyfile(text: &str) -> Keyfile {
    let mut section = String::new();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line:?}"));
        out.insert((section.clone(), key.to_string()), value.to_string());
    }
    out
}

/// How NetworkManager writes back a value we wrote: MACs uppercase, an empty route gateway
/// as the family's zero address.
fn normalise(section: &str, key: &str, value: &str) -> String {
    let value = value.to_ascii_lowercase();
    if key.starts_with("route") && !key.contains('_') && value.contains(",,") {
        let zero = if section == "ipv6" { "::" } else { "0.0.0.0" };
        return value.replacen(",,", &format!(",{zero},"), 1);
    }
    value
}

/// Runs one keyfile through nmcli; returns what nmcli wrote back, or its error.
fn nmcli_round_trip(file: &RenderedFile) -> Result<String, String> {
    let out = common::run_tool(
        "nmcli",
        &[
            "--offline",
            "connection",
            "modify",
            "connection.autoconnect",
            "yes",
        ],
        Some(&file.contents),
    );
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Keys of `ours` that NetworkManager lost or changed.
fn lost_keys(ours: &str, theirs: &str) -> Vec<String> {
    let theirs = parse_keyfile(theirs);
    let mut lost = Vec::new();
    for ((section, key), value) in parse_keyfile(ours) {
        // `autoconnect=true` is NetworkManager's default, which it does not write back.
        if (section.as_str(), key.as_str()) == ("connection", "autoconnect") {
            if theirs
                .get(&(section.clone(), key.clone()))
                .map(String::as_str)
                == Some("false")
            {
                lost.push("connection.autoconnect turned false".into());
            }
            continue;
        }
        let want = normalise(&section, &key, &value);
        match theirs.get(&(section.clone(), key.clone())) {
            Some(got) if got.to_ascii_lowercase() == want => {}
            other => lost.push(format!("[{section}] {key}={value} came back as {other:?}")),
        }
    }
    lost
}

#[test]
fn nmcli_accepts_every_keyfile_and_keeps_every_key() {
    let mut checked = 0;
    for case in common::cases() {
        for flavor in [OsFlavor::Rhel9, OsFlavor::Rhel8] {
            for file in render(flavor, &case.node) {
                if !file.path.to_string_lossy().ends_with(".nmconnection") {
                    continue;
                }
                let context = format!("{}/{flavor}: {}", case.name, file.path.display());
                let back = nmcli_round_trip(&file)
                    .unwrap_or_else(|e| panic!("{context}: nmcli refused it: {e}"));
                let lost = lost_keys(&file.contents, &back);
                assert!(
                    lost.is_empty(),
                    "{context}: {lost:#?}\nnmcli wrote:\n{back}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 2 * 18, "only {checked} keyfiles checked");
}

#[test]
fn the_check_catches_bad_values_and_unknown_keys() {
    let case = &common::cases()[0];
    let file = render(OsFlavor::Rhel9, &case.node)
        .into_iter()
        .find(|f| f.path.to_string_lossy().ends_with(".nmconnection"))
        .unwrap();
    // nmcli refuses an unparsable address outright ...
    let bad_address = RenderedFile {
        contents: file.contents.replace("address1=", "address1=300."),
        ..file.clone()
    };
    assert!(nmcli_round_trip(&bad_address).is_err());
    // ... but silently drops a malformed rule or an unknown key, which the key check catches.
    for broken in [
        file.contents
            .replace("routing-rule1=priority", "routing-rule1=prio"),
        file.contents.replace("mtu=", "mtux="),
    ] {
        let back = nmcli_round_trip(&RenderedFile {
            contents: broken.clone(),
            ..file.clone()
        })
        .expect("nmcli accepts it");
        assert!(!lost_keys(&broken, &back).is_empty(), "{broken}\n{back}");
    }
}
