//! The benchmark's throwaway network namespace: 10 veth NICs with `fa:16:3e` MACs, the
//! in-namespace timer started in it, and a check that a contender really configured them.

use crate::{NICS, Res, mac};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One timed process of a `time-inside` call.
#[derive(Clone, Debug)]
pub struct Timed {
    /// Spawn to exit.
    pub took: Duration,
    /// Wall clock (µs since the epoch) just before the spawn, to place the process's own
    /// log timestamps.
    pub spawned_us: u64,
    /// What the process printed.
    pub stdout: String,
    pub stderr: String,
}

/// A fresh namespace with 10 veth NICs, deleted on drop.
pub struct Netns(String);

impl Netns {
    pub fn new(tag: &str) -> Res<Self> {
        let name = format!("mnb-{}-{tag}", std::process::id());
        check(Command::new("ip").args(["netns", "add", &name]).status()?)?;
        let ns = Self(name);
        let mut batch = String::from("link set lo up\n");
        for k in 0..NICS {
            batch.push_str(&format!(
                "link add eth{k} address {} type veth peer name peer{k}\nlink set peer{k} up\n",
                mac(k)
            ));
        }
        self::batch(&ns.0, &batch)?;
        Ok(ns)
    }

    /// Runs the in-namespace timer over `first ;; again` (each `[K=V ...] program args`),
    /// leaving its result files in `out`; returns both runs.
    pub fn time(&self, exe: &str, out: &Path, first: &[&str], again: &[&str]) -> Res<[Timed; 2]> {
        let status = Command::new("ip")
            .args(["netns", "exec", &self.0, exe, "time-inside"])
            .arg(out)
            .args(first)
            .arg(";;")
            .args(again)
            .status()?;
        if !status.success() {
            let err = std::fs::read_to_string(out.join("error")).unwrap_or_default();
            return Err(format!("{first:?}: {status}: {err}").into());
        }
        let read = |i: usize| -> Res<Timed> {
            let head = std::fs::read_to_string(out.join(format!("{i}.time")))?;
            let mut numbers = head.split_whitespace().map(str::parse::<u64>);
            let spawned_us = numbers.next().ok_or("spawn time")??;
            let took_us = numbers.next().ok_or("duration")??;
            Ok(Timed {
                took: Duration::from_micros(took_us),
                spawned_us,
                stdout: std::fs::read_to_string(out.join(format!("{i}.stdout")))?,
                stderr: std::fs::read_to_string(out.join(format!("{i}.stderr")))?,
            })
        };
        Ok([read(0)?, read(1)?])
    }

    fn show(&self, what: &[&str]) -> String {
        Command::new("ip")
            .args(["-n", &self.0])
            .args(what)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Checks that a contender really configured all 10 NICs (address present on each).
    pub fn assert_configured(&self, prefix: &str) -> Res<()> {
        for k in 0..NICS {
            let out = self.show(&["-o", "addr", "show", "dev", &format!("{prefix}{k}")]);
            if !out.contains(&format!("198.18.{k}.10/24")) {
                return Err(format!("{prefix}{k} not configured: {out}").into());
            }
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Delete the veth pairs first, and wait for it: `ip link del` returns once the
        // kernel unregistered them. Left to `ip netns del`, they are unregistered later by
        // the kernel's namespace cleanup, which takes the RTNL lock and can overlap the next
        // contender's writes (two paired invocations: the agent's re-apply 1.87-1.93 ms this
        // way, 2.19-2.21 ms before).
        let links = (0..NICS)
            .map(|k| format!("link del peer{k}\n"))
            .collect::<String>();
        let _ = batch(&self.0, &links);
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs `commands` with one `ip -batch` in namespace `ns`.
fn batch(ns: &str, commands: &str) -> Res<()> {
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("stdin")?
        .write_all(commands.as_bytes())?;
    check(child.wait()?)
}

pub fn check(status: std::process::ExitStatus) -> Res<()> {
    if status.success() {
        Ok(())
    } else {
        Err(format!("exit {status}").into())
    }
}
