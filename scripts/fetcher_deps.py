#!/usr/bin/env python3
"""Installs each fetcher folder's requirements.txt into its own site-packages/.

What the original restream's Apex build hook did (`pip install -r requirements.txt -t
site-packages`), made idempotent: a folder's site-packages/.restream-requirements holds the
sha256 of the requirements file it was built from (and the target: local Python or Lambda),
and a folder whose marker matches is left alone. A new install goes to a temporary folder
and replaces site-packages only when pip succeeded, so a failed install never leaves a
half-built one behind.

    python3 scripts/fetcher_deps.py functions                 # every folder of functions/
    python3 scripts/fetcher_deps.py backend/tests/fixtures/original/nyt_top
    python3 scripts/fetcher_deps.py --lambda functions        # wheels for the Lambda runtime

`restream fetchers install` runs this same file (embedded in the binary) on `fetchers.dir`.
Exit status 1 when any folder failed; the others are still installed.
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys

MARKER = ".restream-requirements"
# The Lambda runtime of project.json and infrastructure/lambda.tf.
LAMBDA_PYTHON = "3.12"


def folders(paths):
    """Every folder among `paths` (or directly inside them) that has a requirements.txt."""
    for path in paths:
        if os.path.isfile(os.path.join(path, "requirements.txt")):
            yield path
            continue
        if not os.path.isdir(path):
            print("fetcher_deps: %s is not a folder" % path, file=sys.stderr)
            continue
        for name in sorted(os.listdir(path)):
            sub = os.path.join(path, name)
            if os.path.isfile(os.path.join(sub, "requirements.txt")):
                yield sub


def wanted(folder, target):
    """The marker text a site-packages built from this requirements file has."""
    with open(os.path.join(folder, "requirements.txt"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return "sha256=%s target=%s\n" % (digest, target)


def current(folder):
    try:
        with open(os.path.join(folder, "site-packages", MARKER)) as f:
            return f.read()
    except OSError:
        return None


def install(folder, target, python):
    """(ok, what happened) for one folder."""
    marker = wanted(folder, target)
    if current(folder) == marker:
        return True, "up to date"
    staging = os.path.join(folder, ".site-packages.new")
    shutil.rmtree(staging, ignore_errors=True)
    command = [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
               "--quiet", "--target", staging, "-r", os.path.join(folder, "requirements.txt")]
    if target == "lambda":
        command += ["--platform", "manylinux2014_x86_64", "--implementation", "cp",
                    "--python-version", LAMBDA_PYTHON, "--only-binary=:all:"]
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, check=False)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        return False, "cannot run %s: %s" % (python, e)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = done.stdout.strip().splitlines()[-5:]
        if any("No module named pip" in line for line in tail):
            return False, "pip is missing for %s (install python3-pip)" % python
        return False, "pip failed:\n    " + "\n    ".join(tail)
    with open(os.path.join(staging, MARKER), "w") as f:
        f.write(marker)
    final = os.path.join(folder, "site-packages")
    old = os.path.join(folder, ".site-packages.old")
    shutil.rmtree(old, ignore_errors=True)
    if os.path.isdir(final):
        os.rename(final, old)
    os.rename(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    return True, "installed"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="fetcher folders, or folders of them")
    parser.add_argument("--lambda", dest="for_lambda", action="store_true",
                        help="wheels for the Lambda runtime (python %s, x86_64)" % LAMBDA_PYTHON)
    parser.add_argument("--python", default=sys.executable,
                        help="the Python whose pip installs (default: this one)")
    args = parser.parse_args()
    target = "lambda" if args.for_lambda else "local"
    failed = 0
    for folder in folders(args.paths):
        ok, what = install(folder, target, args.python)
        print("%s: %s" % (folder, what), file=sys.stdout if ok else sys.stderr)
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
