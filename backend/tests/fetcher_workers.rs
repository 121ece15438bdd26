//! Warm fetcher workers against real Python processes: module state kept between calls,
//! timeouts, crashes and kills from outside, recycling by calls, memory and edited code,
//! corrupt answer pipes, and the FIFO queue per fetcher.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use restream::fetcher::{
    FetchError, FetchOutcome, FetchRequest, Fetcher, Keys, ProcessFetcher, ProcessRuntime,
    WorkerSettings,
};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/workers")
        .join(name)
}

/// A copy of fixture `name` in a fresh folder named `label` (its metrics are its own).
fn copy(name: &str, label: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(label);
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(fixture(name).join("main.py"), dir.join("main.py")).unwrap();
    (root, dir)
}

fn runtime(timeout: Duration, workers: WorkerSettings) -> ProcessRuntime {
    ProcessRuntime {
        workers,
        ..ProcessRuntime::new("python3", timeout)
    }
}

fn settings(per_fetcher: usize, max_calls: u64, max_rss_mb: u64) -> WorkerSettings {
    WorkerSettings {
        per_fetcher,
        max_calls,
        max_rss_bytes: max_rss_mb * 1024 * 1024,
    }
}

async fn fetch(f: &ProcessFetcher, params: &[(&str, &str)]) -> Result<FetchOutcome, FetchError> {
    fetch_on(f, "test", params).await
}

async fn fetch_on(
    f: &ProcessFetcher,
    channel: &str,
    params: &[(&str, &str)],
) -> Result<FetchOutcome, FetchError> {
    let params: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    f.fetch(FetchRequest {
        channel,
        params: &params,
        keys: &Keys::new(),
        state: None,
    })
    .await
}

/// The first item of a successful fetch.
async fn item(f: &ProcessFetcher, params: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    let outcome = fetch(f, params).await.unwrap();
    outcome.items[0].clone()
}

fn pid(item: &serde_json::Map<String, Value>) -> i64 {
    item["pid"].as_i64().unwrap()
}

/// Whether `pid` still runs (a zombie counts as gone), after a SIGKILL had time to land.
async fn alive(pid: i32) -> bool {
    for _ in 0..50 {
        let running = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false);
        if !running {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// Waits until `path` holds a pid.
async fn pid_in(path: &Path) -> i32 {
    for _ in 0..600 {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pid in {}", path.display());
}

fn events(label: &str, event: &str, reason: &str) -> u64 {
    restream::metrics::get()
        .fetcher_worker_events
        .with_label_values(&[label, event, reason])
        .get()
}

#[tokio::test]
async fn a_worker_imports_once_and_keeps_its_module_state_like_the_runner() {
    let f = ProcessFetcher::new(
        &fixture("warm"),
        runtime(Duration::from_secs(20), settings(1, 100, 512)),
    );
    let first = item(&f, &[]).await;
    let second = item(&f, &[]).await;
    let third = item(&f, &[]).await;
    assert_eq!(pid(&first), pid(&third), "one warm worker served all three");
    assert_eq!(
        [&first["calls"], &second["calls"], &third["calls"]],
        [1, 2, 3]
    );
    // Same working folder, `__file__` and module name as the one-shot runner gives.
    let dir = fixture("warm");
    assert_eq!(first["cwd"], dir.to_str().unwrap());
    assert_eq!(first["file"], dir.join("main.py").to_str().unwrap());
    assert_eq!(first["module"], "main");
    let oneshot = ProcessFetcher::new(
        &fixture("warm"),
        ProcessRuntime {
            mode: restream::fetcher::ProcessMode::Oneshot,
            ..ProcessRuntime::new("python3", Duration::from_secs(20))
        },
    );
    let once = item(&oneshot, &[]).await;
    for key in ["cwd", "file", "module"] {
        assert_eq!(once[key], first[key], "{key}");
    }
    assert_eq!(
        item(&oneshot, &[]).await["calls"],
        1,
        "one-shot: a process per call"
    );
}

#[tokio::test]
async fn a_timeout_kills_the_worker_and_a_fresh_one_serves_the_next_call() {
    let (root, dir) = copy("warm", "warm-timeout");
    let f = ProcessFetcher::new(
        &dir,
        runtime(Duration::from_millis(1500), settings(1, 100, 512)),
    );
    let before = item(&f, &[]).await;
    let pid_file = root.path().join("pid");
    let e = fetch(
        &f,
        &[
            ("mode", "sleep"),
            ("seconds", "60"),
            ("pid_file", pid_file.to_str().unwrap()),
        ],
    )
    .await
    .unwrap_err();
    assert!(matches!(e, FetchError::Timeout { .. }), "{e}");
    let killed = pid_in(&pid_file).await;
    assert_eq!(i64::from(killed), pid(&before));
    assert!(
        !alive(killed).await,
        "the timed-out worker {killed} survived"
    );
    let after = item(&f, &[]).await;
    assert_ne!(pid(&after), pid(&before));
    assert_eq!(after["calls"], 1, "a fresh worker, fresh module state");
    assert_eq!(events("warm-timeout", "kill", "timeout"), 1);
    assert_eq!(events("warm-timeout", "start", "demand"), 2);
}

#[tokio::test]
async fn a_timeout_kills_the_grandchildren_of_a_worker_too() {
    let root = tempfile::tempdir().unwrap();
    let f = ProcessFetcher::new(
        &fixture("warm"),
        runtime(Duration::from_millis(1500), settings(1, 100, 512)),
    );
    let pid_file = root.path().join("pid");
    let e = fetch(
        &f,
        &[
            ("mode", "fork_hang"),
            ("pid_file", pid_file.to_str().unwrap()),
        ],
    )
    .await
    .unwrap_err();
    assert!(matches!(e, FetchError::Timeout { .. }), "{e}");
    let grandchild = pid_in(&pid_file).await;
    assert!(!alive(grandchild).await, "grandchild {grandchild} survived");
}

#[tokio::test]
async fn a_worker_killed_mid_call_fails_that_call_only() {
    let (root, dir) = copy("warm", "warm-killed");
    let f = Arc::new(ProcessFetcher::new(
        &dir,
        runtime(Duration::from_secs(60), settings(2, 100, 512)),
    ));
    let pid_file = root.path().join("pid");
    let doomed = {
        let f = f.clone();
        let pid_file = pid_file.clone();
        tokio::spawn(async move {
            fetch(
                &f,
                &[
                    ("mode", "sleep"),
                    ("seconds", "60"),
                    ("pid_file", pid_file.to_str().unwrap()),
                ],
            )
            .await
        })
    };
    let victim = pid_in(&pid_file).await;
    // The other worker answers while the first one is busy.
    let other = item(&f, &[]).await;
    assert_ne!(pid(&other), i64::from(victim));
    // SAFETY: a signal to the worker process this test started.
    unsafe {
        libc::kill(victim, libc::SIGKILL);
    }
    match doomed.await.unwrap() {
        Err(FetchError::Crashed { detail, .. }) => {
            assert!(detail.contains("killed by signal 9"), "{detail}")
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    let next = item(&f, &[]).await;
    assert_eq!(pid(&next), pid(&other), "the surviving worker goes on");
    assert_eq!(next["calls"], 2);
}

#[tokio::test]
async fn a_worker_that_exits_fails_its_call_and_is_replaced() {
    let f = ProcessFetcher::new(
        &fixture("warm"),
        runtime(Duration::from_secs(20), settings(1, 100, 512)),
    );
    let before = item(&f, &[]).await;
    match fetch(&f, &[("mode", "exit")]).await {
        Err(FetchError::Crashed { detail, .. }) => {
            assert!(detail.contains("exited with status 3"), "{detail}")
        }
        other => panic!("expected a crash, got {other:?}"),
    }
    let after = item(&f, &[]).await;
    assert_ne!(pid(&after), pid(&before));
}

#[tokio::test]
async fn a_worker_is_recycled_after_its_calls() {
    let (_root, dir) = copy("warm", "warm-calls");
    let f = ProcessFetcher::new(&dir, runtime(Duration::from_secs(20), settings(1, 2, 512)));
    let pids: Vec<i64> = [
        item(&f, &[]).await,
        item(&f, &[]).await,
        item(&f, &[]).await,
    ]
    .iter()
    .map(pid)
    .collect();
    assert_eq!(pids[0], pids[1]);
    assert_ne!(pids[1], pids[2], "replaced after 2 calls");
    assert_eq!(events("warm-calls", "recycle", "calls"), 1);
}

#[tokio::test]
async fn a_worker_is_recycled_when_its_memory_grows_past_the_limit() {
    let (_root, dir) = copy("warm", "warm-memory");
    let f = ProcessFetcher::new(&dir, runtime(Duration::from_secs(20), settings(1, 100, 60)));
    let small = item(&f, &[]).await;
    assert_eq!(
        pid(&item(&f, &[]).await),
        pid(&small),
        "under the limit: kept"
    );
    let grown = item(&f, &[("mode", "grow"), ("mb", "80")]).await;
    assert_eq!(pid(&grown), pid(&small));
    let after = item(&f, &[]).await;
    assert_ne!(pid(&after), pid(&grown), "replaced once over 60 MB");
    assert_eq!(after["calls"], 1);
    assert_eq!(events("warm-memory", "recycle", "memory"), 1);
}

#[tokio::test]
async fn an_edited_main_py_is_picked_up_by_the_next_call() {
    let (_root, dir) = copy("warm", "warm-edited");
    let f = ProcessFetcher::new(
        &dir,
        runtime(Duration::from_secs(20), settings(1, 100, 512)),
    );
    let before = item(&f, &[]).await;
    assert_eq!(before["version"], 1);
    let main = dir.join("main.py");
    let code = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, code.replace("VERSION = 1", "VERSION = 22")).unwrap();
    let after = item(&f, &[]).await;
    assert_eq!(after["version"], 22);
    assert_ne!(pid(&after), pid(&before));
    assert_eq!(events("warm-edited", "recycle", "changed"), 1);
}

#[tokio::test]
async fn garbage_on_the_answer_pipe_kills_that_worker_and_nothing_else() {
    let f = ProcessFetcher::new(
        &fixture("rogue"),
        runtime(Duration::from_secs(20), settings(1, 100, 512)),
    );
    let mut last = None;
    for mode in ["garbage", "huge", "forged"] {
        let before = item(&f, &[("mode", "ok")]).await;
        assert_ne!(
            Some(pid(&before)),
            last,
            "a fresh worker after the last garbage"
        );
        match fetch(&f, &[("mode", mode)]).await {
            Err(FetchError::InvalidResponse { detail, .. }) => {
                assert!(detail.contains("worker killed"), "{mode}: {detail}")
            }
            other => panic!("{mode}: expected an invalid response, got {other:?}"),
        }
        assert!(!alive(pid(&before) as i32).await, "{mode}: worker kept");
        last = Some(pid(&before));
    }
}

#[tokio::test]
async fn calls_wait_in_fifo_order_and_never_behind_another_fetchers_backlog() {
    let (root, dir) = copy("warm", "warm-fifo");
    let (_other_root, other_dir) = copy("warm", "warm-other");
    let f = Arc::new(ProcessFetcher::new(
        &dir,
        runtime(Duration::from_secs(60), settings(1, 100, 512)),
    ));
    let other = ProcessFetcher::new(
        &other_dir,
        runtime(Duration::from_secs(60), settings(1, 100, 512)),
    );
    let depth = restream::metrics::get()
        .fetcher_queue_depth
        .with_label_values(&["warm-fifo"]);
    let pid_file = root.path().join("pid");
    let release = root.path().join("release");
    let holder = {
        let f = f.clone();
        let (pid_file, release) = (pid_file.clone(), release.clone());
        tokio::spawn(async move {
            fetch(
                &f,
                &[
                    ("mode", "hold"),
                    ("pid_file", pid_file.to_str().unwrap()),
                    ("release", release.to_str().unwrap()),
                ],
            )
            .await
        })
    };
    pid_in(&pid_file).await;
    // Channels c0..c4 queue one after the other behind the busy worker.
    let mut queued = Vec::new();
    for n in 0..5 {
        let f = f.clone();
        let channel = format!("c{n}");
        queued.push(tokio::spawn(
            async move { fetch_on(&f, &channel, &[]).await },
        ));
        for _ in 0..6000 {
            if depth.get() > n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(depth.get(), n + 1, "c{n} is queued");
    }
    // Another fetcher's call does not wait behind this backlog.
    let free = fetch(&other, &[]).await.unwrap();
    assert_eq!(free.items[0]["calls"], 1);
    assert_eq!(depth.get(), 5, "the backlog is still waiting");
    std::fs::write(&release, "").unwrap();
    holder.await.unwrap().unwrap();
    for (n, call) in queued.into_iter().enumerate() {
        let outcome = call.await.unwrap().unwrap();
        let item = &outcome.items[0];
        assert_eq!(item["channel"], format!("c{n}"));
        assert_eq!(item["calls"], n as u64 + 2, "c{n} ran in arrival order");
    }
    assert_eq!(depth.get(), 0);
}

#[tokio::test]
async fn at_the_global_cap_the_longest_idle_worker_makes_room() {
    let (_a_root, a_dir) = copy("warm", "warm-cap-a");
    let (_b_root, b_dir) = copy("warm", "warm-cap-b");
    let cap = restream::fetcher::WorkerCap::new(1);
    let with_cap = || ProcessRuntime {
        cap: cap.clone(),
        ..runtime(Duration::from_secs(20), settings(1, 100, 512))
    };
    let a = ProcessFetcher::new(&a_dir, with_cap());
    let b = ProcessFetcher::new(&b_dir, with_cap());
    let first = item(&a, &[]).await;
    let other = item(&b, &[]).await;
    assert!(
        !alive(pid(&first) as i32).await,
        "a's idle worker was stopped"
    );
    let again = item(&a, &[]).await;
    assert_ne!(pid(&again), pid(&first));
    assert!(!alive(pid(&other) as i32).await, "then b's");
    assert_eq!(events("warm-cap-a", "recycle", "evicted"), 1);
    assert_eq!(events("warm-cap-b", "recycle", "evicted"), 1);
}
