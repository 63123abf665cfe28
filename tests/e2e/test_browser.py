"""The bookstore's live page in a real browser: headless Chromium, driven through ChromeDriver.

A real ``ddpserver`` serves the page at ``/`` and DDP over SockJS at ``/sockjs``; the page's
script (built from ``testproject/frontend``) lists the books live, logs in with Meteor's
password digest, and shows the user's private shelf. Rows written here, in the test's own
process, must reach the page through PostgreSQL ``NOTIFY``, as from any other process.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install chromium
chromium-driver``) and, when the bundle is missing or stale, npm: without them the test
fails, saying so; it never skips.
"""

import shutil
import subprocess
import tempfile
import time
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from bookstore.models import Author, Book, ShelfItem
from ddp.testing import ServerProcess
from tests.e2e.webdriver import Browser, ChromeDriver
from tests.live import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

FRONTEND = ROOT / "testproject" / "frontend"
BUNDLE = ROOT / "testproject" / "bookstore" / "static" / "bookstore" / "app.js"
#: Where the screenshots go, to look at after a run (or a failure).
SHOTS = Path(tempfile.gettempdir()) / "ddp-e2e"
#: How long the page may take to show a change.
TIMEOUT = 20

# Chromium's options for a headless run that reaches nothing but this machine.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,900",
]

# What the test reads of the page, in one round trip.
SNAPSHOT = """
const one = (css) => document.querySelector(css);
const texts = (css, root = document) =>
  Array.from(root.querySelectorAll(css), (node) => node.textContent);
const authors = {};
for (const li of document.querySelectorAll("#authors > li[data-author]")) {
  authors[li.firstChild.textContent] = texts("[data-book]", li);
}
return {
  status: one("#status").dataset.state,
  live: one("#authors").dataset.live === "true",
  authors,
  books: texts("#authors [data-book]"),
  user: one("#whoami").hidden ? null : one("#username").textContent,
  login_form: !one("#login").hidden,
  login_error: one("#login-error").textContent,
  add_book_error: one("#add-book-error").textContent,
  shelf: texts("#shelf-items li"),
  shelf_hint: one("#shelf-hint").textContent,
  token: localStorage.getItem("bookstore.loginToken"),
  text: document.body.innerText,
};
"""


def run(command, cwd):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        pytest.fail(
            f"{' '.join(command)} failed in {cwd} (exit code {result.returncode}):\n"
            f"{result.stdout}{result.stderr}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def frontend_bundle():
    """The page's script, built with ``npm ci && npm run build`` when missing or stale."""
    sources = [
        *(FRONTEND / "src").rglob("*.js"),
        FRONTEND / "build.mjs",
        FRONTEND / "package-lock.json",
    ]
    newest = max(path.stat().st_mtime for path in sources)
    if BUNDLE.exists() and BUNDLE.stat().st_mtime >= newest:
        return BUNDLE
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "npm not found: the browser test needs the page's script, built from "
            "testproject/frontend. Install Node.js with npm, or build it elsewhere with "
            "`cd testproject/frontend && npm ci && npm run build`.",
            pytrace=False,
        )
    # npm writes this copy of the lockfile at each install.
    installed = FRONTEND / "node_modules" / ".package-lock.json"
    lockfile = FRONTEND / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lockfile.stat().st_mtime:
        run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], FRONTEND)
    run([npm, "run", "build", "--silent"], FRONTEND)
    assert BUNDLE.exists(), f"npm run build wrote no {BUNDLE}"
    return BUNDLE


def executable(*names):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def chromedriver(tmp_path_factory):
    chromium = executable("chromium", "chromium-browser")
    driver = executable("chromedriver")
    if chromium is None or driver is None:
        missing = " and ".join(
            name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path
        )
        pytest.fail(
            f"{missing} not found: the browser test drives Debian's Chromium through "
            "ChromeDriver. Install them with `apt-get install chromium chromium-driver` "
            "(as root).",
            pytrace=False,
        )
    process = ChromeDriver(driver, tmp_path_factory.mktemp("chromedriver") / "log").start()
    process.chromium = chromium
    yield process
    process.stop()


@pytest.fixture
def browser(chromedriver, tmp_path):
    profile = tmp_path / "chromium-profile"
    args = [*CHROMIUM_ARGS, f"--user-data-dir={profile}"]
    session = Browser(chromedriver, chromedriver.chromium, args)
    yield session
    session.quit()


@pytest.fixture
def server(frontend_bundle):
    with ServerProcess() as server:
        yield server


class Page:
    """The page in ``browser``, read and waited on through :data:`SNAPSHOT`."""

    def __init__(self, browser, server):
        self.browser = browser
        self.server = server
        self.shots = 0
        SHOTS.mkdir(exist_ok=True)

    def snapshot(self):
        return self.browser.execute(SNAPSHOT)

    def wait(self, description, condition, timeout=TIMEOUT):
        """The first snapshot for which ``condition`` holds; fails after ``timeout`` seconds
        with the last snapshot, a screenshot, the browser's console and the server's output."""
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.snapshot()
            if condition(snapshot):
                return snapshot
            if time.monotonic() > deadline:
                shot = self.screenshot("failed")
                pytest.fail(
                    f"The page never showed {description} within {timeout} s.\n"
                    f"Last state: {snapshot}\nScreenshot: {shot}\n"
                    f"Browser console:\n{self.browser.console()}\n"
                    f"Server output:\n{self.server.output()[-4000:]}",
                    pytrace=False,
                )
            time.sleep(0.1)

    def screenshot(self, name):
        self.shots += 1
        return self.browser.screenshot(SHOTS / f"{self.shots:02d}-{name}.png")

    def fill(self, css, text):
        field = self.browser.find(css)
        field.clear()
        field.send_keys(text)


def test_live_page_logs_in_shows_changes_and_hides_private_data_at_logout(server, browser):
    call_command("seed_bookstore", stdout=StringIO())
    seeded = set(Book.objects.values_list("title", flat=True))
    janet = Author.objects.get(email="janet@evanovich.com")
    alice = get_user_model().objects.create_user("alice", password="correct horse")
    ShelfItem.objects.create(
        owner=alice, book=Book.objects.get(title="Small Gods"), note="Signed by the author"
    )
    page = Page(browser, server)

    # Anonymous: every seeded book, live, and no shelf (the seed's "reader" has one).
    browser.get(server.url)
    state = page.wait("the live book list", lambda s: s["status"] == "live" and s["live"])
    assert seeded <= set(state["books"]), state
    assert state["user"] is None and state["login_form"], state
    assert state["shelf"] == [] and state["shelf_hint"] == "Log in to see your shelf.", state
    page.screenshot("anonymous")

    # A wrong password is refused, with Meteor's ambiguous reason.
    page.fill("#login [name=username]", "alice")
    page.fill("#login [name=password]", "wrong horse")
    browser.find("#login button[type=submit]").click()
    state = page.wait("the login error", lambda s: s["login_error"])
    assert state["login_error"] == "Something went wrong. Please check your credentials."
    assert state["user"] is None and state["shelf"] == [], state

    # Logged in: her own shelf, and nobody else's.
    page.fill("#login [name=password]", "correct horse")
    browser.find("#login button[type=submit]").click()
    state = page.wait("alice's shelf", lambda s: s["user"] == "alice" and s["shelf"])
    assert state["shelf"] == ["Small Gods: Signed by the author"], state
    assert not state["login_form"] and state["login_error"] == "", state
    assert "Lent to a friend" not in state["text"], "the seeded reader's shelf leaked"
    page.screenshot("logged-in")

    # A reload logs in again with the stored token (Meteor's resume login).
    browser.get(server.url)
    state = page.wait("the resumed login", lambda s: s["user"] == "alice" and s["shelf"])
    assert state["shelf"] == ["Small Gods: Signed by the author"], state

    # Rows written by another process (this one) reach the page live.
    Book.objects.create(title="Hot Six", author=janet)
    state = page.wait(
        "the new book under its author",
        lambda s: "Hot Six" in s["authors"].get("Janet Evanovich <janet@evanovich.com>", []),
    )
    hot_six = Book.objects.get(title="Hot Six")
    ShelfItem.objects.create(owner=alice, book=hot_six, note="Next")
    reader = get_user_model().objects.get(username="reader")
    ShelfItem.objects.create(owner=reader, book=hot_six, note="Not for alice")
    state = page.wait("the new shelf item", lambda s: len(s["shelf"]) == 2)
    assert state["shelf"] == ["Small Gods: Signed by the author", "Hot Six: Next"], state

    # A book added from the page, through bookstore.addBook.
    page.fill("#add-book [name=title]", "Seven Up")
    page.fill("#add-book [name=email]", "janet@evanovich.com")
    browser.find("#add-book button[type=submit]").click()
    state = page.wait("the book added from the page", lambda s: "Seven Up" in s["books"])
    assert Book.objects.get(title="Seven Up").author == janet
    assert "Not for alice" not in state["text"], "another user's shelf item leaked"
    page.screenshot("live-changes")

    # Logged out: the private shelf is gone from the page, and so is the token.
    browser.find("#logout").click()
    state = page.wait("the logged-out page", lambda s: s["user"] is None and s["login_form"])
    assert state["shelf"] == [] and state["shelf_hint"] == "Log in to see your shelf.", state
    assert "Signed by the author" not in state["text"], state["text"]
    assert state["token"] is None
    assert {"Hot Six", "Seven Up"} | seeded <= set(state["books"]), state
    page.screenshot("logged-out")

    # Nothing the browser logged is an error (a failed request, an exception).
    console = browser.console()
    assert "SEVERE" not in console, console
