//! The one place that turns process signals into a shutdown future.

use std::future::Future;

/// Resolves on the first Ctrl-C (SIGINT) or SIGTERM, whichever comes first.
///
/// The handlers are installed when this is called, not when the future is first polled, so a
/// signal that arrives while a service is still starting up is not lost. Must be called inside a
/// Tokio runtime. Services take their shutdown trigger as a future, so `main` passes this one and
/// tests pass their own.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = signal(SignalKind::interrupt()).and_then(|interrupt| {
            signal(SignalKind::terminate()).map(|terminate| (interrupt, terminate))
        });
        async move {
            match streams {
                Ok((mut interrupt, mut terminate)) => tokio::select! {
                    _ = interrupt.recv() => tracing::info!("received Ctrl-C, shutting down"),
                    _ = terminate.recv() => tracing::info!("received SIGTERM, shutting down"),
                },
                Err(error) => {
                    tracing::error!(%error, "cannot listen for signals; stop with SIGKILL");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("received Ctrl-C, shutting down");
        } else {
            std::future::pending::<()>().await;
        }
    }
}
