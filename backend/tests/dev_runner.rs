//! `restream dev`: starts its own Pushpin, serves through it, and stops both on Ctrl-C.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use restream_testkit::ports::{free_port, free_port_block as base_port};

#[test]
fn dev_runs_pushpin_and_stops_it_on_interrupt() {
    let run_dir = tempfile::Builder::new()
        .prefix("rd")
        .tempdir_in("/tmp")
        .unwrap();
    let public = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_restream"))
        .arg("dev")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env(
            "RESTREAM_SERVER__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("RESTREAM_DEV__PUBLIC_LISTEN", format!("127.0.0.1:{public}"))
        .env("RESTREAM_DEV__PUSHPIN_BASE_PORT", base_port().to_string())
        .env("RESTREAM_DEV__RUN_DIR", run_dir.path())
        .env("RESTREAM_STORE__KIND", "memory")
        // Fetches go to a closed loopback port: this test never reaches the real USGS.
        .env("USGS_BASE_URL", format!("http://127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;

    // A real WebSocket handshake through the dev Pushpin reaches the backend's `ready`.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ready = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((mut ws, _)) =
                tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{public}/ws")).await
            {
                use futures_util::{SinkExt, StreamExt};
                let ready = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
                // The default settings find the shipped fetchers in ./functions.
                let sub = r#"{"action":"subscribe","channel":"usgs-earthquakes"}"#;
                ws.send(tokio_tungstenite::tungstenite::Message::text(sub))
                    .await
                    .unwrap();
                let subscribed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
                break format!("{ready:?} {subscribed:?}");
            }
            assert!(
                Instant::now() < deadline,
                "dev Pushpin never accepted a WebSocket"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    assert!(ready.contains(r#"\"type\":\"ready\""#), "{ready}");
    assert!(ready.contains(r#"\"type\":\"subscribed\""#), "{ready}");
    unsafe { libc::kill(pid, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "dev exits cleanly on Ctrl-C: {:?}",
        output.status
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("pushpin started"), "{stderr}");
    let conf = run_dir.path().join("pushpin.conf");
    let left = Command::new("pgrep").arg("-f").arg(&conf).output().unwrap();
    assert!(
        left.stdout.is_empty(),
        "Pushpin processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", public)).is_err(),
        "nothing listens on the public port after exit"
    );
}

#[test]
fn dev_without_pushpin_names_the_install_command() {
    let output = Command::new(env!("CARGO_BIN_EXE_restream"))
        .arg("dev")
        .env("PATH", "/nonexistent")
        .env(
            "RESTREAM_SERVER__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("apt-get install -y pushpin"), "{stderr}");
}
