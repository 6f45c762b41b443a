//! An axum server on its own task, stopped gracefully on request: what
//! `nexus serve`'s front door and the benchmarks' mock upstream share.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server running on a task of its own.
#[derive(Debug)]
pub(crate) struct ServerTask {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl ServerTask {
    /// Serves `app` on `listener` until [`ServerTask::stop`] (or until
    /// this is dropped).
    pub(crate) fn spawn(listener: TcpListener, addr: SocketAddr, app: Router) -> Self {
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // A dropped sender stops the server too.
                    let _ = stopped.await;
                })
                .await
        });
        Self { addr, shutdown, task }
    }

    /// The address it listens on.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests under way finish, and returns.
    pub(crate) async fn stop(self) -> std::io::Result<()> {
        // The server may have stopped already (its task ended): nothing to tell.
        let _ = self.shutdown.send(());
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}
