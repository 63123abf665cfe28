"""What a release promises: the package as installed, its check in CI, and its docs.

The quick tests read the installed ``ddp`` only, so CI's wheel run (a copy of tests/ with
no ddp/ beside it) checks what the wheel installed. The others read the repository.
"""

import importlib.metadata
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import ddp
from ddp.conf import DEFAULTS
from tests.live import ROOT

CHECK_PACKAGE = ROOT / ".ci" / "check_package.py"


@pytest.mark.quick
def test_version_is_the_installed_distributions():
    assert ddp.__version__ == importlib.metadata.version("django-ddp-server")


@pytest.mark.quick
def test_package_says_it_is_typed():
    assert (Path(ddp.__file__).parent / "py.typed").is_file()


def tracked_package_files():
    out = subprocess.run(
        ["git", "ls-files", "ddp"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def build_archives(dist, wheel_files, sdist_files):
    """A wheel and an sdist holding these names (empty files): what the check reads."""
    dist.mkdir()
    with zipfile.ZipFile(dist / "pkg-1.0-py3-none-any.whl", "w") as wheel:
        for name in wheel_files:
            wheel.writestr(name, "")
    with tarfile.open(dist / "pkg-1.0.tar.gz", "w:gz") as sdist:
        for name in sdist_files:
            empty = dist / "empty"
            empty.write_text("")
            sdist.add(empty, arcname=f"pkg-1.0/{name}")
        (dist / "empty").unlink(missing_ok=True)


def check_package(dist):
    return subprocess.run(
        [sys.executable, str(CHECK_PACKAGE), str(dist)], cwd=ROOT, capture_output=True, text=True
    )


@pytest.fixture
def sdist_files():
    out = subprocess.run(
        ["git", "ls-files", "ddp", "docs"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    extras = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.rst", "LICENSE", "CHANGELOG.md"]
    return out.split() + extras


def test_check_package_passes_a_complete_package(tmp_path, sdist_files):
    build_archives(tmp_path / "dist", tracked_package_files(), sdist_files)
    result = check_package(tmp_path / "dist")
    assert result.returncode == 0, result.stderr
    assert "missing" not in result.stderr


def test_check_package_names_what_the_wheel_lacks(tmp_path, sdist_files):
    files = tracked_package_files()
    left_out = ["ddp/migrations/0001_initial.py", "ddp/py.typed"]
    build_archives(tmp_path / "dist", [f for f in files if f not in left_out], sdist_files)
    result = check_package(tmp_path / "dist")
    assert result.returncode == 1
    missing = re.findall(r"^missing from pkg-1\.0-py3-none-any\.whl: (.+)$", result.stderr, re.M)
    assert missing == left_out


def test_check_package_names_what_the_sdist_lacks(tmp_path, sdist_files):
    build_archives(
        tmp_path / "dist", tracked_package_files(), [f for f in sdist_files if f != "LICENSE"]
    )
    result = check_package(tmp_path / "dist")
    assert result.returncode == 1
    assert re.findall(r"^missing from (.+)$", result.stderr, re.M) == ["pkg-1.0.tar.gz: LICENSE"]


def test_every_setting_is_documented():
    text = (ROOT / "docs" / "settings.rst").read_text()
    undocumented = [name for name in DEFAULTS if f"``{name}``" not in text]
    assert undocumented == []


def test_readme_keeps_its_two_commands():
    """The README's first two lines of commands are the project's contract."""
    lines = (ROOT / "README.rst").read_text().splitlines()
    assert lines[5:7] == [
        "    pip install -e '.[example]' && python testproject/manage.py migrate && python "
        "testproject/manage.py seed_bookstore && python testproject/manage.py ddpserver -v 2",
        "    pip install -e '.[test]' && python runtests.py",
    ]


def test_readme_links_only_to_docs_pages_that_exist():
    links = re.findall(r"<(docs/[^>]+)>`_", (ROOT / "README.rst").read_text())
    assert links, "the README links to no docs page"
    assert [link for link in links if not (ROOT / link).is_file()] == []
