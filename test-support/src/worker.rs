//! A worker run as a task of the test, stopped through its shutdown future.

use futures::future::BoxFuture;
use service::worker::WorkerError;
use std::future::Future;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Generous bound for anything that needs a consumer group to form or recover.
pub const GROUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for one request/reply round trip on a running worker.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A worker running as a task of the test.
#[derive(Debug)]
pub struct InProcessWorker {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), WorkerError>>,
}

impl InProcessWorker {
    /// Spawns `run` (for example `|shutdown| invoice_generator::run(config, shutdown)`).
    pub fn spawn<F, Fut>(run: F) -> Self
    where
        F: FnOnce(BoxFuture<'static, ()>) -> Fut,
        Fut: Future<Output = Result<(), WorkerError>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(Box::pin(async {
            stopped.await.ok();
        })));
        InProcessWorker { stop, task }
    }

    /// Triggers shutdown and checks that the worker finished cleanly.
    pub async fn stop(self) {
        self.stop.send(()).expect("worker still running");
        tokio::time::timeout(GROUP_TIMEOUT, self.task)
            .await
            .expect("worker stops in time")
            .expect("worker task did not panic")
            .expect("worker stopped without error");
    }
}
