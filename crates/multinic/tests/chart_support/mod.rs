//! Shared by the `chart_*` tests: renders charts/multinic through `scripts/chart_tool.py`
//! (Helm's own Go SDK) and reads the `multinic` binary's own command-line definitions, so the
//! tests compare what the chart renders with what the programs accept.

#![allow(dead_code)] // each test file uses its own part of this module

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The value-file cases of `scripts/chart_tool.py` (see `CASES` there).
pub const CASES: &[&str] = &["default", "daemonset", "full"];

/// The repository root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python that has helm-python-sdk: the project's `.venv` when it exists.
fn python() -> PathBuf {
    let venv = workspace().join(".venv/bin/python3");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Every object the chart renders for `case`, in template order.
pub fn render(case: &str) -> Vec<Value> {
    let output = Command::new(python())
        .arg(workspace().join("scripts/chart_tool.py"))
        .args(["render", case])
        .output()
        .expect("running scripts/chart_tool.py");
    assert!(
        output.status.success(),
        "rendering the chart ({case}) failed; scripts/chart-check.sh sets up .venv with \
         helm-python-sdk:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("chart_tool.py render prints a JSON list")
}

/// The objects of `kind`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The first container of a workload (Deployment, DaemonSet).
pub fn container(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

/// A JSON array of strings as a vector.
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|s| s.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A container's environment: name and literal value (`None` for `valueFrom`).
pub fn env_of(container: &Value) -> Vec<(String, Option<String>)> {
    container["env"]
        .as_array()
        .map(|vars| {
            vars.iter()
                .map(|var| {
                    let name = var["name"].as_str().expect("env name").to_string();
                    (name, var["value"].as_str().map(str::to_string))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The built binary, with an empty environment so nothing from the test's shell leaks into a
/// parse.
pub fn multinic() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_multinic"));
    command.env_clear();
    command
}

/// One `--long` option of a subcommand, read from its `--help`.
#[derive(Clone, Debug)]
pub struct CliOption {
    /// `--name`.
    pub flag: String,
    /// Whether it takes a value (`--name <VALUE>`) or is a switch.
    pub takes_value: bool,
    /// The environment variable clap also reads it from.
    pub env: Option<String>,
}

/// The options of `multinic <subcommand>` as its own `--help` lists them.
#[derive(Clone, Debug)]
pub struct Cli {
    pub subcommand: String,
    pub options: Vec<CliOption>,
}

impl Cli {
    /// Reads `multinic <subcommand> --help`.
    pub fn of(subcommand: &str) -> Self {
        let output = multinic()
            .args([subcommand, "--help"])
            .output()
            .expect("running multinic");
        assert!(
            output.status.success(),
            "multinic {subcommand} --help failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let help = String::from_utf8(output.stdout).expect("utf-8 help");
        Self {
            subcommand: subcommand.to_string(),
            options: parse_help(&help),
        }
    }

    /// The option read from environment variable `name`.
    pub fn by_env(&self, name: &str) -> Option<&CliOption> {
        self.options.iter().find(|o| o.env.as_deref() == Some(name))
    }

    /// Every environment variable the subcommand reads.
    pub fn env_names(&self) -> Vec<&str> {
        self.options
            .iter()
            .filter_map(|o| o.env.as_deref())
            .collect()
    }

    /// The command-line form of `NAME=value` from the environment, so the program's own parser
    /// can check the value: `--flag=value`, or `--flag` / nothing for a switch.
    pub fn env_as_args(&self, name: &str, value: &str) -> Result<Vec<String>, String> {
        let option = self.by_env(name).ok_or_else(|| {
            format!(
                "multinic {} reads no environment variable {name}",
                self.subcommand
            )
        })?;
        if option.takes_value {
            return Ok(vec![format!("{}={value}", option.flag)]);
        }
        match value {
            "true" => Ok(vec![option.flag.clone()]),
            "false" => Ok(Vec::new()),
            other => Err(format!(
                "{name}={other}: {} is a switch (true/false)",
                option.flag
            )),
        }
    }
}

/// Option headers are the lines indented at most six columns that start with `-`
/// (`  -h, --help`, `      --mode <MODE>`); the `[env: NAME=]` line below one belongs to it.
fn parse_help(help: &str) -> Vec<CliOption> {
    let mut options: Vec<CliOption> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent <= 6 && trimmed.starts_with('-') {
            if let Some(flag) = trimmed
                .split([',', ' '])
                .find(|token| token.starts_with("--"))
            {
                options.push(CliOption {
                    flag: flag.to_string(),
                    takes_value: trimmed.contains('<'),
                    env: None,
                });
            }
        } else if let Some(rest) = trimmed.strip_prefix("[env: ")
            && let Some(last) = options.last_mut()
        {
            let name: String = rest
                .chars()
                .take_while(|c| *c != '=' && *c != ']')
                .collect();
            last.env = Some(name);
        }
    }
    options
}

/// Runs the program's own parser over `args` (`multinic ARGS... --help`): clap checks every
/// argument before the trailing `--help` (unknown flags, missing or invalid values) and only
/// then prints help, so success means the program accepts them all.
pub fn dry_parse(args: &[String]) -> Result<(), String> {
    let output = multinic()
        .args(args)
        .arg("--help")
        .output()
        .expect("running multinic");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "multinic {} rejects them:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The pairs of all `--agent-env=NAME=value` arguments.
pub fn agent_env_args(args: &[String]) -> Vec<(String, String)> {
    args.iter()
        .filter_map(|a| a.strip_prefix("--agent-env="))
        .map(|pair| {
            let (name, value) = pair.split_once('=').expect("--agent-env=NAME=value");
            (name.to_string(), value.to_string())
        })
        .collect()
}
