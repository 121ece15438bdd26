//! The warm workers of one fetcher: a FIFO queue of calls in front of at most
//! `fetchers.workers_per_fetcher` workers, recycled by call count, memory, changed code or
//! environment, under one global cap on live workers (`fetchers.max_workers`).

use std::ffi::OsString;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::child::{Called, Failure, Sources, Spec, Worker};
use super::WorkerSettings;
use crate::fetcher::sandbox::ProcessSlots;

/// The cap on live warm workers, shared by every pool. When it is reached, a fetcher that
/// needs a worker stops the longest-idle worker of any fetcher.
#[derive(Debug, Clone)]
pub struct WorkerCap {
    live: Arc<Semaphore>,
    max: usize,
    pools: Arc<Mutex<Vec<Weak<Shared>>>>,
}

impl WorkerCap {
    /// At most `max` (≥ 1) live workers.
    pub fn new(max: usize) -> WorkerCap {
        let max = max.max(1);
        WorkerCap {
            live: Arc::new(Semaphore::new(max)),
            max,
            pools: Arc::default(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Room for one more live worker, waiting at most `wait`.
    async fn room(&self, wait: Duration) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.live.clone().try_acquire_owned() {
            return Some(p);
        }
        if let Some((label, worker)) = self.longest_idle() {
            drop(worker);
            note(&label, "recycle", "evicted");
        }
        tokio::time::timeout(wait, self.live.clone().acquire_owned())
            .await
            .ok()
            .map(|p| p.expect("the semaphore is never closed"))
    }

    /// Takes the worker idle the longest, of any pool.
    fn longest_idle(&self) -> Option<(String, Worker)> {
        let mut pools = self.pools.lock().expect("pools lock");
        pools.retain(|p| p.strong_count() > 0);
        let oldest = pools
            .iter()
            .filter_map(|p| p.upgrade())
            .filter_map(|p| {
                let since = p.idle.lock().expect("idle lock").first()?.idle_since;
                Some((since, p))
            })
            .min_by_key(|(since, _)| *since)?
            .1;
        let mut idle = oldest.idle.lock().expect("idle lock");
        // Idle workers are kept oldest first.
        (!idle.is_empty()).then(|| (oldest.label.clone(), idle.remove(0)))
    }
}

impl Default for WorkerCap {
    fn default() -> WorkerCap {
        WorkerCap::new(super::DEFAULT_MAX_WORKERS)
    }
}

/// What the cap sees of a pool: its idle workers, oldest first.
struct Shared {
    label: String,
    idle: Mutex<Vec<Worker>>,
}

/// Why a call got no worker.
#[derive(Debug)]
pub enum Refused {
    /// Every worker (or slot) stayed busy for the call's timeout: which setting caps it.
    Busy(String),
    Spawn(std::io::Error),
}

/// One fetcher's workers and the queue in front of them.
pub struct WorkerPool {
    shared: Arc<Shared>,
    python: String,
    dir: std::path::PathBuf,
    timeout: Duration,
    settings: WorkerSettings,
    /// Fair (FIFO) permits, one per worker: the per-fetcher queue.
    queue: Arc<Semaphore>,
    slots: ProcessSlots,
    cap: WorkerCap,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("fetcher", &self.shared.label)
            .field("settings", &self.settings)
            .finish()
    }
}

/// Counts a call waiting in the queue for as long as it waits (dropped futures included).
struct Waiting(prometheus::IntGauge);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl WorkerPool {
    pub fn new(
        label: &str,
        python: &str,
        dir: &std::path::Path,
        timeout: Duration,
        settings: WorkerSettings,
        slots: ProcessSlots,
        cap: WorkerCap,
    ) -> WorkerPool {
        let shared = Arc::new(Shared {
            label: label.to_string(),
            idle: Mutex::default(),
        });
        cap.pools
            .lock()
            .expect("pools lock")
            .push(Arc::downgrade(&shared));
        WorkerPool {
            shared,
            python: python.to_string(),
            dir: dir.to_path_buf(),
            timeout,
            queue: Arc::new(Semaphore::new(settings.per_fetcher.max(1))),
            settings,
            slots,
            cap,
        }
    }

    /// Runs `event` on a worker started with `env`, after the calls queued before it.
    pub async fn call(&self, event: &Value, env: &[(String, OsString)]) -> Result<Called, Refused> {
        let label = &self.shared.label;
        let metrics = crate::metrics::get();
        let started = Instant::now();
        let waiting = Waiting(metrics.fetcher_queue_depth.with_label_values(&[label]));
        waiting.0.inc();
        let Ok(Ok(_turn)) =
            tokio::time::timeout(self.timeout, self.queue.clone().acquire_owned()).await
        else {
            return Err(Refused::Busy(format!(
                "all {} workers of this fetcher stayed busy for {:.1}s (fetchers.workers_per_fetcher)",
                self.settings.per_fetcher,
                self.timeout.as_secs_f64()
            )));
        };
        let Some(_slot) = self.slots.acquire(self.timeout).await else {
            return Err(Refused::Busy(format!(
                "all {} fetcher process slots stayed busy for {:.1}s (fetchers.max_processes)",
                self.slots.max(),
                self.timeout.as_secs_f64()
            )));
        };
        drop(waiting);
        metrics
            .fetcher_queue_wait
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        let mut worker = match self.checkout(env) {
            Some(w) => w,
            None => {
                let Some(room) = self.cap.room(self.timeout).await else {
                    return Err(Refused::Busy(format!(
                        "all {} warm workers stayed busy for {:.1}s (fetchers.max_workers)",
                        self.cap.max(),
                        self.timeout.as_secs_f64()
                    )));
                };
                let spec = Spec {
                    python: self.python.clone(),
                    dir: self.dir.clone(),
                    timeout: self.timeout,
                    env: env.to_vec(),
                };
                let worker = Worker::spawn(&spec, room).map_err(Refused::Spawn)?;
                note(label, "start", "demand");
                worker
            }
        };
        let called = worker.call(event, self.timeout).await;
        match &called.answer {
            Ok(_) => self.checkin(worker),
            Err(failure) => {
                let reason = match failure {
                    Failure::Timeout => "timeout",
                    Failure::Exited(_) => "exited",
                    Failure::Protocol(_) => "protocol",
                    Failure::OutputTooLarge => "output_too_large",
                };
                note(label, "kill", reason);
                drop(worker);
            }
        }
        Ok(called)
    }

    /// An idle worker still fit to serve a call with `env`; unfit ones are stopped.
    fn checkout(&self, env: &[(String, OsString)]) -> Option<Worker> {
        let sources = Sources::read(&self.dir);
        let label = &self.shared.label;
        loop {
            let mut worker = self.shared.idle.lock().expect("idle lock").pop()?;
            let unfit = if worker.spoiled() {
                "exited"
            } else if worker.sources != sources {
                "changed"
            } else if worker.env != env {
                "env"
            } else {
                return Some(worker);
            };
            note(label, "recycle", unfit);
        }
    }

    /// Back to the idle list, unless it served its calls or grew too big.
    fn checkin(&self, mut worker: Worker) {
        let label = &self.shared.label;
        if worker.calls >= self.settings.max_calls {
            note(label, "recycle", "calls");
            return;
        }
        if worker
            .rss_bytes()
            .is_some_and(|rss| rss > self.settings.max_rss_bytes)
        {
            note(label, "recycle", "memory");
            return;
        }
        worker.idle_since = Instant::now();
        self.shared.idle.lock().expect("idle lock").push(worker);
    }
}

fn note(fetcher: &str, event: &str, reason: &str) {
    crate::metrics::get()
        .fetcher_worker_events
        .with_label_values(&[fetcher, event, reason])
        .inc();
    tracing::debug!(fetcher, event, reason, "fetcher worker");
}
