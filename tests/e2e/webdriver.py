"""A minimal W3C WebDriver client over ``urllib``, and ChromeDriver in a subprocess.

Just what the browser test needs: open a page, find elements, type, click, run a script,
take a screenshot. No Selenium: ChromeDriver speaks plain HTTP and JSON.
"""

import base64
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request

#: The key under which W3C WebDriver returns an element reference.
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class WebDriverError(Exception):
    """An error answer of the driver: ``error`` is its W3C error code."""

    def __init__(self, error, message):
        super().__init__(f"{error}: {message}")
        self.error = error


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(method, url, body=None, timeout=60):
    """Send one WebDriver command and return its ``value``."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json; charset=utf-8")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        answer = json.loads(error.read() or b"{}")
        value = answer.get("value") or {}
        raise WebDriverError(value.get("error", error.code), value.get("message", "")) from None
    return answer.get("value")


class ChromeDriver:
    """``chromedriver`` on a free loopback port, stopped (with its browsers) by :meth:`stop`."""

    def __init__(self, executable, log_path):
        self.executable = executable
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self, timeout=30):
        self.log = open(self.log_path, "wb")  # closed by stop()
        self.process = subprocess.Popen(
            [self.executable, f"--port={self.port}", "--allowed-ips=127.0.0.1"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if request("GET", f"{self.url}/status", timeout=5).get("ready"):
                    return self
            except (OSError, WebDriverError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"chromedriver did not start:\n{self.output()}")

    def output(self):
        with open(self.log_path, "rb") as log:
            return log.read().decode(errors="replace")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self.log.close()


class Element:
    def __init__(self, browser, element_id):
        self.browser = browser
        self.path = f"/element/{element_id}"

    def click(self):
        self.browser.command("POST", f"{self.path}/click", {})

    def clear(self):
        self.browser.command("POST", f"{self.path}/clear", {})

    def send_keys(self, text):
        self.browser.command("POST", f"{self.path}/value", {"text": text})

    @property
    def text(self):
        return self.browser.command("GET", f"{self.path}/text")


class Browser:
    """One WebDriver session of Chromium (``binary``) with command-line ``args``."""

    def __init__(self, driver, binary, args):
        self.driver = driver
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": list(args)},
            "goog:loggingPrefs": {"browser": "ALL"},
        }
        session = request(
            "POST", f"{driver.url}/session", {"capabilities": {"alwaysMatch": capabilities}}
        )
        self.session = f"{driver.url}/session/{session['sessionId']}"

    def command(self, method, path, body=None):
        return request(method, f"{self.session}{path}", body)

    def get(self, url):
        self.command("POST", "/url", {"url": url})

    def execute(self, script, *args):
        """Run ``script`` (a function body; ``arguments`` holds ``args``) and return its value."""
        return self.command("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        found = self.command("POST", "/element", {"using": "css selector", "value": css})
        return Element(self, found[ELEMENT])

    def screenshot(self, path):
        path.write_bytes(base64.b64decode(self.command("GET", "/screenshot")))
        return path

    def console(self):
        """The browser's console messages so far (a ChromeDriver extension), as text."""
        try:
            entries = self.command("POST", "/se/log", {"type": "browser"})
        except WebDriverError as error:
            return f"(no console log: {error})"
        return "\n".join(f"{e.get('level')}: {e.get('message')}" for e in entries)

    def quit(self):
        try:
            self.command("DELETE", "")
        except (OSError, WebDriverError):
            pass
