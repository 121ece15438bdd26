//! What a fetcher process may see and use: an allowlisted environment, its own process group
//! (killed whole), and a cap on how many fetcher processes run at once.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Variables every fetcher process gets when the backend has them: what Python needs to find
/// programs, decode text, tell the time zone and verify TLS. `HOME` is not among them (Python
/// falls back to the password database; an operator who wants it adds it to
/// `fetchers.process_env`).
pub const BASE_ENV: [&str; 7] = [
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Set for every fetcher process: no `__pycache__` written into the fetcher's folder.
pub const FIXED_ENV: [(&str, &str); 1] = [("PYTHONDONTWRITEBYTECODE", "1")];

/// Prefixes of variables never passed to a fetcher process, whoever asks: cloud credentials
/// and the backend's own settings (which may hold secrets).
pub const DENIED_ENV_PREFIXES: [&str; 2] = ["AWS_", "RESTREAM_"];

/// Default of `fetchers.max_processes`.
pub const DEFAULT_MAX_PROCESSES: usize = 8;

/// Why a variable name cannot be allowlisted.
pub fn env_name_problem(name: &str) -> Option<&'static str> {
    let mut chars = name.chars();
    let well_formed = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128;
    if !well_formed {
        return Some("must be 1-128 ASCII letters, digits or '_', not starting with a digit");
    }
    let upper = name.to_ascii_uppercase();
    if DENIED_ENV_PREFIXES.iter().any(|p| upper.starts_with(p)) {
        return Some("variables starting with AWS_ or RESTREAM_ are never passed to fetchers");
    }
    None
}

/// The environment of one fetcher process: the base list, the operator's `extra` and the
/// fetcher's `declared` names, each with the backend's value when it has one, plus
/// [`FIXED_ENV`]. Denied names are left out even if listed.
pub fn environment(extra: &[String], declared: &[String]) -> Vec<(String, OsString)> {
    let names = BASE_ENV
        .iter()
        .map(|n| n.to_string())
        .chain(extra.iter().cloned())
        .chain(declared.iter().cloned());
    let mut out: Vec<(String, OsString)> = Vec::new();
    for name in names {
        if env_name_problem(&name).is_some() || out.iter().any(|(n, _)| *n == name) {
            continue;
        }
        if let Some(value) = std::env::var_os(&name) {
            out.push((name, value));
        }
    }
    out.extend(FIXED_ENV.iter().map(|(k, v)| (k.to_string(), v.into())));
    out
}

/// The cap on concurrent fetcher processes, shared by every process fetcher.
#[derive(Debug, Clone)]
pub struct ProcessSlots {
    slots: Arc<Semaphore>,
    max: usize,
}

/// A running process's slot: freed (and the running gauge lowered) on drop.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        crate::metrics::get().fetcher_processes.dec();
    }
}

impl ProcessSlots {
    /// At most `max` (≥ 1) processes at once.
    pub fn new(max: usize) -> ProcessSlots {
        let max = max.max(1);
        ProcessSlots {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot, waiting at most `wait` for one; `None` when none freed up in time.
    pub async fn acquire(&self, wait: Duration) -> Option<Slot> {
        let metrics = crate::metrics::get();
        let started = Instant::now();
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => tokio::time::timeout(wait, self.slots.clone().acquire_owned())
                .await
                .ok()
                .map(|p| p.expect("the semaphore is never closed")),
        };
        metrics
            .fetcher_process_wait
            .observe(started.elapsed().as_secs_f64());
        let permit = permit?;
        metrics.fetcher_processes.inc();
        Some(Slot { _permit: permit })
    }
}

impl Default for ProcessSlots {
    fn default() -> ProcessSlots {
        ProcessSlots::new(DEFAULT_MAX_PROCESSES)
    }
}

/// Kills a process group with SIGKILL when dropped, unless disarmed. Drop it while the group
/// leader is not yet reaped: its pid then still names this group and no other.
#[derive(Debug)]
pub struct GroupKill {
    pgid: Option<i32>,
}

impl GroupKill {
    /// For a child spawned with `process_group(0)` (its pid is the group id).
    pub fn new(pid: Option<u32>) -> GroupKill {
        GroupKill {
            pgid: pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1),
        }
    }

    /// Kills every process left in the group now.
    pub fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: killpg only sends a signal; ESRCH (group already gone) is fine.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Kills every process a warm worker's call left running: the worker is a child subreaper, so
/// each of them is its child or, once its parent is gone, becomes one. Returns how many were
/// killed. Reads `/proc`; elsewhere it finds none.
pub async fn kill_leftovers(leader: i32) -> usize {
    let mut killed = 0;
    // A killed process's own children come back to the worker only once it died: a few passes.
    for _ in 0..100 {
        let left = leftovers(leader);
        if left.is_empty() {
            return killed;
        }
        for pid in &left {
            // SAFETY: kill only sends a signal to a child of our worker.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        killed += left.len();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tracing::warn!(
        worker = leader,
        "processes started by a fetcher call could not all be killed"
    );
    killed
}

/// The running (not zombie) children of every thread of `leader`.
fn leftovers(leader: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{leader}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        out.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .filter(|p| *p > 1 && !zombie(*p)),
        );
    }
    out
}

fn zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_and_malformed_names_are_refused() {
        for bad in [
            "",
            "1X",
            "A-B",
            "A=B",
            "AWS_SECRET_ACCESS_KEY",
            "aws_profile",
            "RESTREAM_KEYS__FILE",
        ] {
            assert!(env_name_problem(bad).is_some(), "{bad}");
        }
        for good in ["NYT_BASE_URL", "_X", "HTTPS_PROXY", "AWSOME"] {
            assert_eq!(env_name_problem(good), None, "{good}");
        }
    }

    #[test]
    fn the_environment_holds_only_allowlisted_names() {
        let listed = vec!["AWS_SECRET_ACCESS_KEY".to_string(), "PATH".to_string()];
        let env = environment(&listed, &["RESTREAM_X".to_string()]);
        let names: Vec<_> = env.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names
            .iter()
            .all(|n| !n.starts_with("AWS_") && !n.starts_with("RESTREAM_")));
        assert_eq!(names.iter().filter(|n| **n == "PATH").count(), 1);
        assert!(names.contains(&"PYTHONDONTWRITEBYTECODE"));
    }

    proptest::proptest! {
        /// Whatever a fetcher or an operator lists, an accepted name can neither smuggle a
        /// value (`=`, NUL) nor name a credential.
        #[test]
        fn accepted_names_are_plain_and_never_credentials(name in "(?i)(aws_|restream_)?[A-Za-z0-9_=\\x00 -]{0,20}") {
            if env_name_problem(&name).is_none() {
                let upper = name.to_ascii_uppercase();
                proptest::prop_assert!(!upper.starts_with("AWS_") && !upper.starts_with("RESTREAM_"));
                proptest::prop_assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slots_cap_concurrency_and_time_out() {
        let slots = ProcessSlots::new(1);
        let held = slots.acquire(Duration::from_secs(1)).await.expect("free");
        assert!(slots.acquire(Duration::from_secs(1)).await.is_none());
        drop(held);
        assert!(slots.acquire(Duration::from_secs(1)).await.is_some());
    }
}
