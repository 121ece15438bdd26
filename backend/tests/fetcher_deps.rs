//! A fetcher folder in the original restream's shape with a `requirements.txt`: it cannot load
//! until `restream fetchers install` puts its dependency into its `site-packages/` (once: the
//! install is keyed by the file's hash), then it runs with free-form params. pip installs a
//! wheel built here, so nothing leaves the machine.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python with pip that the test suite installs (`scripts/install-deps.sh --tests`).
fn python() -> String {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.is_file(),
        "run `bash scripts/install-deps.sh --tests` first (creates .venv)"
    );
    venv.display().to_string()
}

fn restream(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_restream"))
        .args(args)
        .env("RESTREAM_STORE__KIND", "memory")
        .env("RESTREAM_FETCHERS__CHANNELS_DIR", "/nonexistent")
        .env("RESTREAM_FETCHERS__DIR", dir)
        .env("RESTREAM_FETCHERS__PYTHON", python())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A pure-Python wheel `hello_dep` (module `hello_dep`, `GREETING`), built with zipfile.
fn wheel(dir: &Path, greeting: &str) -> PathBuf {
    let path = dir.join("hello_dep-1.0-py3-none-any.whl");
    let script = r#"
import sys, zipfile
path, greeting = sys.argv[1], sys.argv[2]
info = "hello_dep-1.0.dist-info/"
with zipfile.ZipFile(path, "w") as z:
    z.writestr("hello_dep.py", "GREETING = %r\n" % greeting)
    z.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: hello-dep\nVersion: 1.0\n")
    z.writestr(info + "WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr(info + "RECORD", "")
"#;
    let ok = Command::new(python())
        .args(["-c", script])
        .arg(&path)
        .arg(greeting)
        .status()
        .unwrap()
        .success();
    assert!(ok, "building the wheel");
    path
}

const MAIN: &str = "import sys
sys.path.append('./site-packages')
import hello_dep

def lambda_function(event, context):
\tif event['call'] == 'metadata':
\t\treturn {
\t\t\t'name': 'hello-dep',
\t\t\t'description': 'says hello',
\t\t\t'id_field': 'id',
\t\t\t'poll_interval': 10
\t\t}
\telif event['call'] == 'fetch':
\t\treturn {
\t\t\t'status_code': 200,
\t\t\t'result': [{'id': hello_dep.GREETING, 'section': event.get('params', {}).get('section', 'home')}]
\t\t}
";

#[test]
fn requirements_are_installed_once_into_site_packages() {
    let root = tempfile::tempdir().unwrap();
    let fetchers = root.path().join("functions");
    let folder = fetchers.join("hello_dep");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("main.py"), MAIN).unwrap();
    std::fs::write(
        folder.join("function.json"),
        r#"{"runtime": "python", "handler": "main.lambda_function"}"#,
    )
    .unwrap();
    let whl = wheel(root.path(), "hello-1");
    std::fs::write(
        folder.join("requirements.txt"),
        format!("{}\n", whl.display()),
    )
    .unwrap();

    // Not installed: a load warning naming the fix, and the import failure explained.
    let (_, out) = restream(&["fetchers", "list"], &fetchers);
    assert!(
        out.contains("has a requirements.txt but no site-packages installed from it"),
        "{out}"
    );
    assert!(out.contains("module 'hello_dep' is not installed"), "{out}");

    let (ok, out) = restream(&["fetchers", "install"], &fetchers);
    assert!(ok && out.contains("hello_dep: installed"), "{out}");
    let marker = folder.join("site-packages/.restream-requirements");
    assert!(std::fs::read_to_string(&marker)
        .unwrap()
        .ends_with(" target=local\n"));
    let (ok, out) = restream(&["fetchers", "install"], &fetchers);
    assert!(ok && out.contains("hello_dep: up to date"), "{out}");

    // Loads without a warning, and takes a param it never declared.
    let (ok, out) = restream(
        &["fetchers", "run", "hello-dep", "-p", "section=world"],
        &fetchers,
    );
    assert!(ok, "{out}");
    assert!(out.contains("hello-1") && out.contains("world"), "{out}");
    assert!(!out.contains("no site-packages"), "{out}");
    let (_, out) = restream(&["fetchers", "list"], &fetchers);
    assert!(out.contains("(free-form)"), "{out}");

    // An edited requirements file is stale until installed again; a failed install keeps the
    // working site-packages.
    std::fs::write(
        folder.join("requirements.txt"),
        format!(
            "{}\n{}\n",
            whl.display(),
            root.path().join("missing.whl").display()
        ),
    )
    .unwrap();
    let (_, out) = restream(&["fetchers", "list"], &fetchers);
    assert!(
        out.contains("has a site-packages built from another requirements.txt"),
        "{out}"
    );
    let (ok, out) = restream(&["fetchers", "install"], &fetchers);
    assert!(!ok && out.contains("pip failed"), "{out}");
    assert!(folder.join("site-packages/hello_dep.py").is_file());
    assert!(!folder.join(".site-packages.new").exists());
    let (ok, out) = restream(&["fetchers", "run", "hello-dep"], &fetchers);
    assert!(ok && out.contains("hello-1"), "{out}");
}
