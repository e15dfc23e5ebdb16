//! Child processes of a test (a worker binary, a peer in another language, a dashboard) that
//! cannot outlive it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::time::Duration;

/// A child process killed and reaped when this is dropped, so a failing test leaves nothing
/// running. If the test is panicking, the files given to [`ChildGuard::show_on_panic`] (its
/// log, its output) are printed first; the directory given to [`ChildGuard::remove_on_drop`] is
/// removed last.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    shown: Vec<PathBuf>,
    scratch: Option<PathBuf>,
}

impl ChildGuard {
    /// Guards `child`, called `name` in messages.
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        ChildGuard {
            name: name.into(),
            child,
            shown: Vec::new(),
            scratch: None,
        }
    }

    /// Prints `file` if the test panics.
    pub fn show_on_panic(mut self, file: impl Into<PathBuf>) -> Self {
        self.shown.push(file.into());
        self
    }

    /// Removes `dir` when dropped.
    pub fn remove_on_drop(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch = Some(dir.into());
        self
    }

    /// The process.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// What it is called in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The files shown on panic, each under a `--- <name> <file> ---` line.
    pub fn output(&self) -> String {
        self.shown
            .iter()
            .map(|file| {
                let text = std::fs::read_to_string(file).unwrap_or_default();
                format!("--- {} {} ---\n{text}", self.name, file.display())
            })
            .collect()
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = &mut self.child;
        let what = format!("the {} to exit", self.name);
        crate::wait_for(&what, timeout, || {
            std::future::ready(child.try_wait().expect("poll the child process"))
        })
        .await
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let _ = std::io::stderr().lock().write_all(self.output().as_bytes());
        }
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
