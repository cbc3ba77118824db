//! `multinic validate`: checks resource files the way the controller will, before they reach a
//! cluster.

use anyhow::Context;
use multinic_api::{MultiNicNodeConfig, resource_from, validate_spec};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `multinic validate`.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// YAML files holding MultiNicNodeConfig resources (several documents per file allowed).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Prints `FILE: <field path>: <message>` for every problem; exit 1 when there was any.
pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut problems = 0usize;
    let mut resources = 0usize;
    for file in &args.files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for document in check_documents(&text) {
            resources += 1;
            problems += document.len();
            for problem in document {
                println!("{}: {problem}", file.display());
            }
        }
    }
    eprintln!(
        "{} file(s), {resources} resource(s), {problems} problem(s)",
        args.files.len()
    );
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The problems of each YAML document in `text` (an empty list for a valid resource).
fn check_documents(text: &str) -> Vec<Vec<String>> {
    let docs: Vec<serde_yaml::Value> = match serde_yaml::Deserializer::from_str(text)
        .map(serde_yaml::Value::deserialize)
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(docs) => docs.into_iter().filter(|d| !d.is_null()).collect(),
        Err(e) => return vec![vec![format!("not valid YAML: {e}")]],
    };
    let several = docs.len() > 1;
    docs.into_iter()
        .enumerate()
        .map(|(n, doc)| {
            let label = |name: Option<&str>| match (several, name) {
                (false, _) => String::new(),
                (true, Some(name)) => format!(" (document {}, {name})", n + 1),
                (true, None) => format!(" (document {})", n + 1),
            };
            let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("");
            if kind != "MultiNicNodeConfig" {
                return vec![format!(
                    "kind: expected MultiNicNodeConfig, got {kind:?}{}",
                    label(None)
                )];
            }
            // A type error names its field like every other problem.
            let resource: MultiNicNodeConfig = match resource_from(doc) {
                Ok(r) => r,
                Err(e) => return vec![format!("{e}{}", label(None))],
            };
            let name = resource.metadata.name.as_deref();
            match validate_spec(&resource.spec) {
                Ok(_) => Vec::new(),
                Err(errors) => errors
                    .0
                    .iter()
                    .map(|e| format!("{e}{}", label(name)))
                    .collect(),
            }
        })
        .collect()
}
