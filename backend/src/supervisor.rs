//! Essential tasks (the scheduler, the stats reader, the HTTP server): without any one of them
//! the service answers requests but serves nothing, so one that ends before shutdown (or
//! panics) fails `/readyz`, is logged, and shuts the process down with an error.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How an essential task ended before shutdown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Death {
    #[error("essential task {0} stopped")]
    Stopped(&'static str),
    #[error("essential task {task} panicked: {message}")]
    Panicked { task: &'static str, message: String },
}

/// The essential tasks of one process, and which of them died.
#[derive(Clone, Default)]
pub struct Essentials {
    dead: Arc<Mutex<Vec<Death>>>,
}

impl Essentials {
    /// Runs `task` as an essential task: if it ends while `shutdown` is not cancelled, it is
    /// recorded dead and `shutdown` is cancelled, so the process drains and exits.
    pub fn spawn<F>(
        &self,
        name: &'static str,
        task: F,
        shutdown: &CancellationToken,
    ) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (essentials, shutdown) = (self.clone(), shutdown.clone());
        let task = tokio::spawn(task);
        tokio::spawn(async move {
            let death = match task.await {
                Ok(()) if shutdown.is_cancelled() => return,
                Ok(()) => Death::Stopped(name),
                Err(e) => Death::Panicked {
                    task: name,
                    message: panic_message(e),
                },
            };
            tracing::error!(task = name, reason = %death, "an essential task died; the service cannot work without it and shuts down");
            essentials.dead.lock().expect("essentials lock").push(death);
            shutdown.cancel();
        })
    }

    /// The tasks that died, in order.
    pub fn dead(&self) -> Vec<Death> {
        self.dead.lock().expect("essentials lock").clone()
    }

    /// `Err` with the first task that died, if any did.
    pub fn check(&self) -> Result<(), Death> {
        match self.dead().into_iter().next() {
            Some(death) => Err(death),
            None => Ok(()),
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let panic = e.into_panic();
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "(no message)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_dies_early_is_recorded_and_shuts_down_the_rest() {
        let essentials = Essentials::default();
        let shutdown = CancellationToken::new();
        let waiting = essentials.spawn(
            "waiting",
            {
                let s = shutdown.clone();
                async move { s.cancelled().await }
            },
            &shutdown,
        );
        let dying = essentials.spawn(
            "scheduler",
            async { panic!("leases only in cluster mode") },
            &shutdown,
        );
        dying.await.unwrap();
        waiting.await.unwrap();
        assert!(shutdown.is_cancelled());
        assert_eq!(
            essentials.dead(),
            vec![Death::Panicked {
                task: "scheduler",
                message: "leases only in cluster mode".into()
            }],
            "the one that ended at shutdown is not dead"
        );
        assert_eq!(
            essentials.check().unwrap_err().to_string(),
            "essential task scheduler panicked: leases only in cluster mode"
        );
    }

    #[tokio::test]
    async fn a_task_that_returns_before_shutdown_is_dead_too() {
        let essentials = Essentials::default();
        let shutdown = CancellationToken::new();
        essentials
            .spawn("stats reader", async {}, &shutdown)
            .await
            .unwrap();
        assert_eq!(essentials.dead(), vec![Death::Stopped("stats reader")]);
        assert!(shutdown.is_cancelled());
    }
}
