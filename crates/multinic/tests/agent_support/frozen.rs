//! A process held stopped (SIGSTOP) for a test, as a hung daemon or API server would be: it
//! is resumed (SIGCONT) when the guard drops, also when the test fails, and at the latest
//! after a limit, so that a run waiting on it without a timeout of its own ends (and fails
//! its test) instead of hanging it.

use std::process::Command;
use std::time::Duration;

/// Holds the process `pid` stopped until dropped, or until the limit passes.
pub struct Frozen(String);

impl Frozen {
    pub fn new(pid: impl Into<String>, limit: Duration) -> Self {
        let pid = pid.into();
        signal("-STOP", &pid);
        let watched = pid.clone();
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            let _ = Command::new("kill").args(["-CONT", &watched]).status();
        });
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal("-CONT", &self.0);
    }
}

fn signal(which: &str, pid: &str) {
    let status = Command::new("kill")
        .args([which, pid])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {which} {pid}");
}
