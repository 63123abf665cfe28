#!/usr/bin/env python
"""Run the whole test suite: ``python runtests.py [--quick] [pytest arguments]``.

Installs the Node client used by the interoperability tests on first run (``npm ci`` in
``tests/node``, from its lock file), then runs pytest. ``--quick`` runs only the tests marked
``quick``, the subset CI also runs on the oldest and newest Python and Django. For the
browser test, a full run installs Debian's Chromium and ChromeDriver when they are missing
and it runs as root, and for the test of deploy/ Debian's nginx. A run that collects no
test fails: a typo in a path or marker must not pass as green.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "tests" / "node"


def install_node_client():
    """Run ``npm ci`` in tests/node unless its node_modules is already there."""
    if not (NODE_DIR / "package.json").exists() or (NODE_DIR / "node_modules").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        sys.exit(
            "runtests.py: npm not found. The interoperability tests run a Node DDP client; "
            "install Node.js (with npm) and run again."
        )
    print("runtests.py: npm ci in tests/node", flush=True)
    # Its summary goes to stdout, dropped here; its errors go to stderr, kept.
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        stdout=subprocess.DEVNULL,
    )
    if result.returncode:
        sys.exit(f"runtests.py: npm ci failed in {NODE_DIR} (exit code {result.returncode})")


def install_debian_packages():
    """Install what the browser test and the test of deploy/ run, from Debian's packages,
    when missing: Chromium and its ChromeDriver, and nginx.

    The README's test command must work on a fresh machine; these are the things pip and
    npm cannot bring, so they come from Debian (as root, as .ci/run does). Elsewhere those
    tests fail and say what to install.
    """
    wanted = {"chromium": "chromium", "chromedriver": "chromium-driver", "nginx": "nginx"}
    # Debian puts nginx in /usr/sbin, which a user's PATH may leave out.
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    packages = sorted(
        {package for name, package in wanted.items() if not shutil.which(name, path=path)}
    )
    if not packages or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    print(f"runtests.py: apt-get install {' '.join(packages)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", *packages],
    ):
        if subprocess.run(command, env=env, stdout=subprocess.DEVNULL).returncode:
            sys.exit(f"runtests.py: {' '.join(command)} failed")


def main(argv):
    args = list(argv)
    if "--quick" in args:
        args.remove("--quick")
        args = ["-m", "quick", *args]
    install_node_client()
    if "--quick" not in argv:
        install_debian_packages()
    basetemp = None
    if not any(arg == "--basetemp" or arg.startswith("--basetemp=") for arg in args):
        # A folder of its own: pytest keeps only the newest three of /tmp/pytest-of-<user>,
        # so a second suite on the machine would delete this one's, and its PostgreSQL's
        # data with it. Kept after a failure, for its logs.
        basetemp = tempfile.mkdtemp(prefix="ddp-tests-")
        args = [f"--basetemp={basetemp}", *args]
    code = pytest.main(args)
    if basetemp is not None and code == pytest.ExitCode.OK:
        shutil.rmtree(basetemp, ignore_errors=True)
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("runtests.py: no tests ran", file=sys.stderr)
        return 1
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
