//! `multinic validate`: checks resource files the way the controller will, before they reach a
//! cluster.

use anyhow::Context;
use multinic_api::{MultiNicNodeConfig, validate_spec};
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
        for line in check_documents(&text) {
            problems += usize::from(line.is_problem);
            resources += usize::from(!line.is_problem || line.counted);
            if line.is_problem {
                println!("{}: {}", file.display(), line.text);
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

/// One outcome line of a document: a problem, or a valid resource.
struct Outcome {
    is_problem: bool,
    /// Whether this line is the first of its resource (for counting).
    counted: bool,
    text: String,
}

fn check_documents(text: &str) -> Vec<Outcome> {
    let mut out = Vec::new();
    let docs: Vec<serde_yaml::Value> = match serde_yaml::Deserializer::from_str(text)
        .map(serde_yaml::Value::deserialize)
        .collect::<Result<_, _>>()
    {
        Ok(docs) => docs,
        Err(e) => {
            out.push(problem(true, format!("not valid YAML: {e}")));
            return out;
        }
    };
    let docs: Vec<_> = docs.into_iter().filter(|d| !d.is_null()).collect();
    let several = docs.len() > 1;
    for (n, doc) in docs.into_iter().enumerate() {
        let label = |name: Option<&str>| match (several, name) {
            (false, _) => String::new(),
            (true, Some(name)) => format!(" (document {}, {name})", n + 1),
            (true, None) => format!(" (document {})", n + 1),
        };
        let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if kind != "MultiNicNodeConfig" {
            out.push(problem(
                true,
                format!(
                    "kind: expected MultiNicNodeConfig, got {kind:?}{}",
                    label(None)
                ),
            ));
            continue;
        }
        let resource: MultiNicNodeConfig = match serde_yaml::from_value(doc) {
            Ok(r) => r,
            Err(e) => {
                out.push(problem(true, format!("{e}{}", label(None))));
                continue;
            }
        };
        let name = resource.metadata.name.as_deref();
        match validate_spec(&resource.spec) {
            Ok(_) => out.push(Outcome {
                is_problem: false,
                counted: true,
                text: String::new(),
            }),
            Err(errors) => {
                for (i, e) in errors.0.iter().enumerate() {
                    out.push(problem(i == 0, format!("{e}{}", label(name))));
                }
            }
        }
    }
    out
}

fn problem(counted: bool, text: String) -> Outcome {
    Outcome {
        is_problem: true,
        counted,
        text,
    }
}
