#!/usr/bin/env python
"""Fail when the built wheel or sdist lacks a file the repository tracks.

``python .ci/check_package.py DIST_DIR`` reads the one wheel and the one sdist in
DIST_DIR and compares them with ``git ls-files``: every tracked file under ``ddp/`` that
is not a test must be in the wheel (a migration, template or ``py.typed`` left out of the
package data breaks only installed copies, never a source checkout), and the sdist must
hold those, the docs and the files its metadata names. It prints each archive's size,
then one ``missing from <archive>: <path>`` line per file and exits 1, or says all is there.
"""

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

# Besides ddp/ and docs/, what the sdist must carry to rebuild the wheel and its metadata.
SDIST_EXTRAS = [
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.rst",
    "LICENSE",
    "CHANGELOG.md",
]


def tracked(*paths):
    """The files git tracks under ``paths``, as POSIX paths from the repository's root."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--", *paths], capture_output=True, check=True, text=True
    ).stdout
    return {name for name in out.split("\0") if name}


def is_test(path):
    """A test module or test folder: the package may ship without them."""
    parts = PurePosixPath(path).parts
    name = parts[-1]
    return "tests" in parts[:-1] or name.startswith("test_") or name == "conftest.py"


def only(dist, pattern):
    found = sorted(dist.glob(pattern))
    if len(found) != 1:
        sys.exit(f"check_package: expected one {pattern} in {dist}, found {len(found)}")
    return found[0]


def wheel_names(wheel):
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def sdist_names(sdist):
    """Member names without the sdist's ``<name>-<version>/`` prefix."""
    with tarfile.open(sdist) as archive:
        return {name.partition("/")[2] for name in archive.getnames()}


def main(argv):
    if len(argv) != 1:
        sys.exit("usage: python .ci/check_package.py DIST_DIR")
    dist = Path(argv[0])
    wheel, sdist = only(dist, "*.whl"), only(dist, "*.tar.gz")
    package = {path for path in tracked("ddp") if not is_test(path)}
    expected = {
        wheel: package,
        sdist: package | tracked("docs") | set(SDIST_EXTRAS),
    }
    contents = {wheel: wheel_names(wheel), sdist: sdist_names(sdist)}
    missing = 0
    for archive, paths in expected.items():
        print(f"{archive.name}: {archive.stat().st_size / 1024:.0f} KiB")
        for path in sorted(paths - contents[archive]):
            print(f"missing from {archive.name}: {path}", file=sys.stderr)
            missing += 1
    if missing:
        print(f"check_package: {missing} tracked file(s) missing from the package", file=sys.stderr)
        return 1
    print(f"check_package: every tracked file of ddp/ ({len(package)}) is in the wheel")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
