//! The servers of one process (the HTTP endpoint, the Flight endpoint): tasks on one tokio
//! runtime, tracked together and stopped together once ingestion has flushed and committed.

use std::future::Future;
use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The runtime every server of the process runs on.
pub struct Servers {
    runtime: tokio::runtime::Runtime,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Servers {
    /// A runtime of two worker threads (`sluice-serve`), serving nothing yet.
    pub fn new() -> std::io::Result<Servers> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-serve")
            .enable_all()
            .build()?;
        Ok(Servers {
            runtime,
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        })
    }

    /// Binds `addr` (port 0 picks a free port: the socket is bound once, here, and handed to
    /// the server) and runs `serve` on it until [`Servers::stop`]. `serve` gets the listener
    /// and the token that is cancelled at the stop; its error is logged with `name`. Returns
    /// the bound address.
    pub fn spawn<F, Fut, E>(
        &self,
        name: &'static str,
        addr: SocketAddr,
        serve: F,
    ) -> std::io::Result<SocketAddr>
    where
        F: FnOnce(tokio::net::TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        let listener = {
            let _guard = self.runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let served = serve(listener, self.shutdown.child_token());
        self.tracker.spawn_on(
            async move {
                if let Err(e) = served.await {
                    tracing::error!(server = name, error = %e, "server stopped");
                }
            },
            self.runtime.handle(),
        );
        Ok(bound)
    }

    /// Runs `work` (blocking) every `period` until [`Servers::stop`], one run at a time.
    pub fn every(&self, period: std::time::Duration, work: impl Fn() + Send + Sync + 'static) {
        let work = std::sync::Arc::new(work);
        let shutdown = self.shutdown.child_token();
        self.tracker.spawn_on(
            async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(period) => {}
                    }
                    let w = work.clone();
                    let _ = tokio::task::spawn_blocking(move || w()).await;
                }
            },
            self.runtime.handle(),
        );
    }

    /// Stops every server (they stop accepting and end their open streams) and waits for
    /// them. Call it after ingestion stopped: readers see every committed batch until then.
    pub fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.runtime.block_on(self.tracker.wait());
    }
}
