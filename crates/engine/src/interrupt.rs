//! Stopping a run part-way on purpose: [`Interrupt`] is set from outside (the agent's SIGTERM
//! handler) and every later write of the run fails, so the run reverts what it changed and
//! returns its outcome. The [`Gate`] sits in front of every write (the write counters call it)
//! and also holds the test-only pause hook.

use crate::config::EngineConfig;
use crate::error::EngineError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A flag that makes the engine's running (and later) applies stop writing and revert.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Asks every run of the engine to stop and revert.
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Interrupt::set`] was called.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for a signal handler that only sets it (`signal_hook::flag`).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

/// Checked before each write of the apply phase; the revert phase disarms it.
#[derive(Debug)]
pub(crate) struct Gate {
    interrupt: Interrupt,
    armed: AtomicBool,
    #[cfg(feature = "fault-injection")]
    pause: Option<(u64, std::path::PathBuf)>,
}

impl Gate {
    pub fn new(config: &EngineConfig, interrupt: &Interrupt) -> Self {
        #[cfg(not(feature = "fault-injection"))]
        let _ = config;
        Self {
            interrupt: interrupt.clone(),
            armed: AtomicBool::new(true),
            #[cfg(feature = "fault-injection")]
            pause: config.fault.pause_after_writes.clone(),
        }
    }

    /// Lets every further write through (the revert must run to the end).
    pub fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }

    /// `Ok` when the next write (after `done` writes) may go ahead.
    pub fn check(&self, done: u64) -> Result<(), EngineError> {
        if !self.armed.load(Ordering::SeqCst) {
            return Ok(());
        }
        #[cfg(feature = "fault-injection")]
        self.pause_at(done);
        if self.interrupt.is_set() {
            return Err(EngineError::Interrupted { writes: done });
        }
        Ok(())
    }

    /// Test-only: at the configured write, announce it through the marker file and block
    /// this thread until the run is interrupted (or the process is killed).
    #[cfg(feature = "fault-injection")]
    fn pause_at(&self, done: u64) {
        let Some((at, marker)) = &self.pause else {
            return;
        };
        if done != *at {
            return;
        }
        let _ = std::fs::write(marker, done.to_string());
        while !self.interrupt.is_set() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
