//! A process fetcher's Python dependencies: a folder with a `requirements.txt` needs them in its
//! own `site-packages/` (the original restream's layout: `sys.path.append('./site-packages')`).
//! At load, a folder whose `site-packages` is missing or was built from another requirements
//! file gets a warning naming the fix; `restream fetchers install` installs them with the
//! same script CI and the Lambda packaging use (`scripts/fetcher_deps.py`).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The installer, embedded so the binary needs no checkout.
const SCRIPT: &str = include_str!("../../../scripts/fetcher_deps.py");
/// Written by the installer inside `site-packages`: what it was built from.
const MARKER: &str = ".restream-requirements";

/// Where a fetcher folder's dependencies stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deps {
    /// No `requirements.txt`: the standard library only.
    None,
    /// `site-packages` was built from this `requirements.txt`, for local use.
    Installed,
    /// `requirements.txt` but no usable `site-packages`.
    Missing,
    /// `site-packages` from another version of `requirements.txt` (or for Lambda).
    Stale,
}

/// The marker text a `site-packages` installed locally from `requirements` has.
fn wanted(requirements: &[u8]) -> String {
    format!("sha256={:x} target=local\n", Sha256::digest(requirements))
}

/// Reads the folder's requirements file and marker (never runs anything).
pub fn status(dir: &Path) -> Deps {
    let Ok(requirements) = std::fs::read(dir.join("requirements.txt")) else {
        return Deps::None;
    };
    match std::fs::read_to_string(dir.join("site-packages").join(MARKER)) {
        Ok(marker) if marker == wanted(&requirements) => Deps::Installed,
        Ok(_) => Deps::Stale,
        Err(_) => Deps::Missing,
    }
}

/// Logs a warning when `dir`'s dependencies are not installed; true when they are fine.
pub fn warn_if_missing(dir: &Path, label: &str) -> bool {
    let problem = match status(dir) {
        Deps::None | Deps::Installed => return true,
        Deps::Missing => "has a requirements.txt but no site-packages installed from it",
        Deps::Stale => "has a site-packages built from another requirements.txt",
    };
    tracing::warn!(
        fetcher = %label,
        dir = %dir.display(),
        fix = "restream fetchers install (or python3 scripts/fetcher_deps.py <dir>)",
        "fetcher {problem}; its imports may fail"
    );
    false
}

/// A hint for a fetcher whose `metadata` call crashed on an import: which module, and the fix.
pub fn import_hint(detail: &str) -> Option<String> {
    let module = detail.strip_prefix("No module named ")?;
    Some(format!(
        "module {module} is not installed: list it in the fetcher's requirements.txt and run `restream fetchers install`"
    ))
}

/// Runs the installer with `python` on `dirs` (fetcher folders, or folders of them); its
/// report (one line per folder) goes to stdout and stderr. Ok(false) when a folder failed.
pub fn install(python: &str, dirs: &[PathBuf], for_lambda: bool) -> std::io::Result<bool> {
    let mut command = std::process::Command::new(python);
    command
        .arg("-c")
        .arg(SCRIPT)
        .arg("--python")
        .arg(python)
        .args(dirs);
    if for_lambda {
        command.arg("--lambda");
    }
    Ok(command.status()?.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_the_requirements_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(status(dir.path()), Deps::None);
        std::fs::write(dir.path().join("requirements.txt"), "requests\n").unwrap();
        assert_eq!(status(dir.path()), Deps::Missing);
        assert!(!warn_if_missing(dir.path(), "x"));
        let site = dir.path().join("site-packages");
        std::fs::create_dir(&site).unwrap();
        std::fs::write(site.join(MARKER), wanted(b"requests\n")).unwrap();
        assert_eq!(status(dir.path()), Deps::Installed);
        assert!(warn_if_missing(dir.path(), "x"));
        std::fs::write(dir.path().join("requirements.txt"), "requests==2.32.3\n").unwrap();
        assert_eq!(status(dir.path()), Deps::Stale);
    }

    #[test]
    fn the_marker_is_the_scripts() {
        // The script writes "sha256=<hex> target=<local|lambda>\n"; keep the two in step.
        assert!(SCRIPT.contains(r#""sha256=%s target=%s\n" % (digest, target)"#));
        assert!(SCRIPT.contains(&format!("MARKER = \"{MARKER}\"")));
        assert!(wanted(b"").starts_with(
            "sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 "
        ));
    }

    #[test]
    fn import_failures_get_a_hint() {
        assert!(import_hint("No module named 'requests'")
            .unwrap()
            .contains("'requests' is not installed"));
        assert_eq!(import_hint("boom"), None);
    }
}
