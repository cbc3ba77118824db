//! `multinic render`: shows (or writes under a root directory) the persistent network files the
//! agent would write on a node of a given OS for a MultiNicNodeConfig, without touching the
//! host's network.

use anyhow::{Context, bail};
use multinic_api::{MultiNicNodeConfig, validate_spec};
use multinic_netconf::{DesiredNode, OsFlavor, RenderedFile, render};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `multinic render`.
#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// OS flavor to render for: ubuntu (netplan), rhel9/rhel8 (NetworkManager keyfile + .link),
    /// rhel7 (ifcfg + route/rule files).
    #[arg(long, env = "MULTINIC_OS", value_name = "OS")]
    pub os: OsFlavor,
    /// Write the files under this directory (as if it were the host's `/`), creating
    /// directories and setting modes, and list them; without it, print them to stdout.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// A MultiNicNodeConfig YAML file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Routing and sysctl options.
    #[command(flatten)]
    pub net: super::net_args::NetArgs,
}

/// Renders the file's spec; exit 1 (with one `FILE: field: problem` line each) when the spec
/// is invalid.
pub fn run(args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("{}: not valid YAML", args.file.display()))?;
    let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != "MultiNicNodeConfig" {
        bail!(
            "{}: kind: expected MultiNicNodeConfig, got {kind:?}",
            args.file.display()
        );
    }
    let resource: MultiNicNodeConfig = serde_yaml::from_value(doc)
        .with_context(|| format!("{}: not a MultiNicNodeConfig", args.file.display()))?;
    let valid = match validate_spec(&resource.spec) {
        Ok(valid) => valid,
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("{}: {error}", args.file.display());
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let (node, unplaced) =
        DesiredNode::build(&valid.interfaces, &args.net.net_options(), &|_| None);
    if let Some(first) = unplaced.first() {
        bail!("{}: {first}", args.file.display());
    }
    let files = render(args.os, &node);
    match &args.root {
        Some(root) => {
            for file in &files {
                let path = write_under(root, file)?;
                println!("{:04o} {}", file.mode, path.display());
            }
        }
        None => print!("{}", listing(&files)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Every file with a header line naming its path and mode.
fn listing(files: &[RenderedFile]) -> String {
    let mut out = String::new();
    for (i, file) in files.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "==> {} (mode {:04o}) <==\n{}",
            file.path.display(),
            file.mode,
            file.contents
        ));
    }
    out
}

/// Writes `file` at `root` + its absolute path: through a temporary file created with the final
/// mode (so a 0600 file is never readable by others, not even briefly), then renamed.
fn write_under(root: &Path, file: &RenderedFile) -> anyhow::Result<PathBuf> {
    let relative = file.path.strip_prefix("/").unwrap_or(&file.path);
    let path = root.join(relative);
    let dir = path.parent().context("rendered path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.multinic-tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(file.mode)
            .open(&tmp)?;
        // The umask may have cleared bits of the mode; set it exactly.
        out.set_permissions(std::fs::Permissions::from_mode(file.mode))?;
        out.write_all(file.contents.as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(path)
}
