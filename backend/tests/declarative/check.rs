//! `restream fetchers check` on the repository's channels and fetchers (it must pass: this is
//! how CI runs it) and on a folder of broken files (each problem at its file and line).

use std::process::Command;

use crate::repo;

fn check(channels_dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_restream"))
        .args(["fetchers", "check"])
        .current_dir(repo(""))
        .env("RESTREAM_FETCHERS__CHANNELS_DIR", channels_dir)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

#[test]
fn every_shipped_channel_and_fetcher_passes() {
    let out = check(&repo("channels"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok channels/bbc-news.toml") || stdout.contains("bbc-news.toml"),
        "{stdout}"
    );
    assert!(stdout.contains("functions/nyt_top/main.py"), "{stdout}");
    assert!(stdout.contains(", 0 problems"), "{stdout}");
}

#[test]
fn broken_files_are_reported_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "good.toml",
        "name = \"good\"\nurl = \"https://x.invalid/a\"\n",
    );
    write(
        "jq.toml",
        "name = \"jq\"\nurl = \"https://x.invalid/a\"\ntransform = '.[ | oops'\n",
    );
    write(
        "typo.toml",
        "name = \"typo\"\nurl = \"https://x.invalid/a\"\n\nitem = \"/x\"\n",
    );
    write(
        "reserved.toml",
        "name = \"reserved\"\nurl = \"https://x.invalid/a?n={limit}\"\n\n[params.limit]\ndefault = \"5\"\n",
    );
    write(
        "clash.toml",
        "name = \"good\"\nurl = \"https://x.invalid/b\"\n",
    );
    let out = check(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let d = dir.path().display();
    for expected in [
        format!("{d}/jq.toml:3: field `transform`: transform does not compile"),
        format!("{d}/typo.toml:4: unknown field `item`"),
        format!("{d}/reserved.toml:4: invalid metadata: field `params.limit`"),
        format!("{d}/good.toml:1: name good already taken"),
        format!("ok {d}/good.toml"),
        "5 channel files checked, 4 problems".to_string(),
    ] {
        assert!(
            stdout.contains(&expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
}
