//! The host lock: one agent at a time changes a node. Every run that may write takes an
//! exclusive `flock` on `<root>/run/multinic/agent.lock` (the host's `/run`, shared by every
//! agent Pod and the service on that node) and holds it until the run is over; the kernel
//! drops it when the process dies, so a killed agent never leaves it stuck.

use crate::error::AgentError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

/// The lock file, relative to the root.
pub const LOCK_PATH: &str = "run/multinic/agent.lock";

/// How often a waiting agent tries again.
const RETRY: Duration = Duration::from_millis(100);

/// A held host lock; released on drop (or by the kernel when the process ends).
#[derive(Debug)]
pub struct HostLock {
    _file: File,
}

/// Takes the host lock under `root`, waiting up to `wait` while another agent holds it.
pub async fn acquire(root: &Path, wait: Duration) -> Result<HostLock, AgentError> {
    let path = root.join(LOCK_PATH);
    let io = |source: std::io::Error| AgentError::Lock {
        path: path.clone(),
        detail: source.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                tokio::time::sleep(RETRY).await;
            }
            Err(TryLockError::WouldBlock) => {
                return Err(AgentError::Lock {
                    detail: format!(
                        "another multinic agent ({}) still holds it after {wait:?}",
                        holder(&mut file)
                    ),
                    path,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    // Who holds it, for the message a waiting agent prints.
    let me = format!("pid {}", std::process::id());
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(me.as_bytes()).map_err(io)?;
    tracing::debug!(path = %path.display(), "host lock taken");
    Ok(HostLock { _file: file })
}

/// The holder's note (`pid N`), or `unknown holder`.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    let text = text.trim();
    if text.is_empty() {
        "unknown holder".into()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_then_fails_with_the_holder_named() {
        let root = std::env::temp_dir().join(format!("mnlock-{}", std::process::id()));
        let first = acquire(&root, Duration::ZERO).await.unwrap();
        let err = acquire(&root, Duration::from_millis(250))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent.lock"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        // Released on drop: a waiter gets it once the first holder is gone.
        let waiter = tokio::spawn({
            let root = root.clone();
            async move { acquire(&root, Duration::from_secs(30)).await }
        });
        drop(first);
        waiter.await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&root);
    }
}
