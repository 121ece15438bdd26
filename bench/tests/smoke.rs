//! Every benchmark scenario at a size that takes seconds, as part of `cargo test --workspace`.
//!
//! It runs the real `restream-bench smoke` (its own Pushpin, backend and fake upstream per
//! scenario), which fails unless each scenario completes and the upstream sees exactly one
//! call per poll. The `restream` binary it drives is the one `cargo test --workspace` builds
//! beside `restream-bench` in the same target folder, with the same features, so the smoke
//! run costs no second build of the dependency tree.

use std::process::Command;

#[test]
fn every_scenario_completes_with_one_upstream_call_per_poll() {
    let bench = env!("CARGO_BIN_EXE_restream-bench");
    let out = Command::new(bench)
        .arg("smoke")
        .output()
        .expect("restream-bench starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "restream-bench smoke failed ({}); a missing `restream` binary means the backend \
         was not built beside it: run `cargo test --workspace`\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    // One JSON line per scenario: fan-out, subscribe, scale, store cost, budget cost, lease
    // cost, classify, publish, workers, history.
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("each result line is JSON"))
        .collect();
    assert_eq!(lines.len(), 10, "one result per scenario:\n{stdout}");
    println!("{stdout}");
}
