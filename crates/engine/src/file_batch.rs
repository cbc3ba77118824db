//! A run's persistent files on a blocking thread of their own: staged (temp files written and
//! flushed) while the hand-off begins and the kernel changes run, then committed (renamed
//! into place, directories flushed) as soon as the run allows it, so the disk waits overlap
//! the netlink work instead of following it.

use crate::apply::Counters;
use crate::error::EngineError;
use crate::files::{self, FileOp};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use tokio::task::JoinHandle;

/// What the thread ends with: whether the commit began (files on disk may have changed, so a
/// revert restores them), and the position of the op that failed.
type Written = (bool, Result<(), (usize, EngineError)>);

/// The file thread of one run.
pub(crate) struct FileBatch {
    task: JoinHandle<Written>,
    /// Sent once the run may change things (the hand-off began); dropped unsent, the staged
    /// files are never committed.
    allow: Option<SyncSender<()>>,
    /// Set once the kernel side failed: a commit not begun by then never begins.
    failed: Arc<AtomicBool>,
}

impl FileBatch {
    /// Starts staging `ops` under `root`; nothing visible changes before [`Self::allow_commit`].
    pub(crate) fn stage(root: PathBuf, ops: Vec<FileOp>, counters: Arc<Counters>) -> Self {
        let (allow, allowed) = sync_channel::<()>(1);
        let failed = Arc::new(AtomicBool::new(false));
        let stopped = failed.clone();
        let task = tokio::task::spawn_blocking(move || {
            let staged = match files::stage(&root, &ops) {
                Ok(staged) => staged,
                Err(e) => return (false, Err(e)),
            };
            // Dropping the staged batch removes its temp files.
            if allowed.recv().is_err() || stopped.load(Ordering::SeqCst) {
                return (false, Ok(()));
            }
            (true, staged.commit(|| counters.count_file()))
        });
        Self {
            task,
            allow: Some(allow),
            failed,
        }
    }

    /// The run may change the node now: commit once staged, unless [`Self::stop`] came first.
    pub(crate) fn allow_commit(&mut self) {
        if let Some(allow) = self.allow.take() {
            // The thread only stops listening once it returned with an error, which
            // `finish` reports.
            let _ = allow.send(());
        }
    }

    /// The kernel side failed: a commit that has not begun never will (one already running
    /// finishes, and the revert puts the previous files back).
    pub(crate) fn stop(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Waits for the thread (a batch never allowed is dropped, its temp files removed).
    pub(crate) async fn finish(mut self, root: &std::path::Path) -> Written {
        self.allow.take();
        match self.task.await {
            Ok(written) => written,
            Err(e) => (
                true,
                Err((0, EngineError::io(root, std::io::Error::other(e)))),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use crate::interrupt::Interrupt;
    use multinic_netconf::OsFlavor;
    use std::path::Path;

    /// A scratch root, removed on drop (also when a test panics).
    struct Root(PathBuf);

    impl Root {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("mn-fb-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        /// Every file under the root (temp files included), with its contents.
        fn files(&self) -> Vec<(String, String)> {
            let dir = self.0.join("etc/netplan");
            let mut out: Vec<_> = std::fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .map(|e| e.unwrap().path())
                        .map(|p| (name(&p), std::fs::read_to_string(&p).unwrap()))
                        .collect()
                })
                .unwrap_or_default();
            out.sort();
            out
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn name(path: &Path) -> String {
        path.file_name().unwrap().to_string_lossy().into_owned()
    }

    fn batch(root: &Root) -> FileBatch {
        let config = EngineConfig::new(&root.0, OsFlavor::Ubuntu);
        let counters = Counters::new(&config, &Interrupt::default());
        let ops = (0..3)
            .map(|i| FileOp::Write {
                path: PathBuf::from(format!("/etc/netplan/9{i}-multinic{i}.yaml")),
                mode: 0o600,
                contents: format!("nic {i}\n").into_bytes(),
            })
            .collect();
        FileBatch::stage(root.0.clone(), ops, counters)
    }

    #[tokio::test]
    async fn an_allowed_batch_commits_every_file() {
        let root = Root::new("allowed");
        let mut files = batch(&root);
        files.allow_commit();
        let (began, written) = files.finish(&root.0).await;
        assert!(began && written.is_ok(), "{written:?}");
        let names: Vec<String> = root.files().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "90-multinic0.yaml",
                "91-multinic1.yaml",
                "92-multinic2.yaml"
            ]
        );
    }

    #[tokio::test]
    async fn a_batch_stopped_before_its_commit_or_never_allowed_changes_nothing() {
        let root = Root::new("stopped");
        let files = batch(&root);
        // Stopped before it was allowed: the commit can no longer begin.
        files.stop();
        let mut files = files;
        files.allow_commit();
        let (began, written) = files.finish(&root.0).await;
        assert!(!began && written.is_ok(), "{written:?}");
        assert_eq!(root.files(), [], "no file and no temp file left");

        let files = batch(&root);
        let (began, written) = files.finish(&root.0).await;
        assert!(!began && written.is_ok(), "{written:?}");
        assert_eq!(root.files(), [], "no file and no temp file left");
    }
}
