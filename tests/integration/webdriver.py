"""A real headless Chromium, driven over the W3C WebDriver protocol.

Debian's chromium and chromium-driver (scripts/deps --test); chromedriver
runs on a free loopback port and the browser with a fresh profile, no
network services of its own (no sync, updates, QUIC or background
fetches).  Only the standard library: the protocol is JSON over HTTP.

    with Browser(tmp) as browser:
        browser.get(url)
        browser.find("#question").send_keys("...")
        browser.wait(lambda: browser.find_all("svg rect.bar"))
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or \
    "/usr/bin/chromedriver"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--window-size=1280,1000"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriverError(Exception):
    pass


class Element:
    def __init__(self, browser, element_id):
        self.browser = browser
        self.id = element_id

    def _call(self, method, path, body=None):
        return self.browser._call(method, "/element/%s%s" % (self.id, path), body)

    def click(self):
        self._call("POST", "/click", {})

    def clear(self):
        self._call("POST", "/clear", {})

    def send_keys(self, text):
        self._call("POST", "/value", {"text": text})

    @property
    def text(self):
        return self._call("GET", "/text")

    def prop(self, name):
        return self._call("GET", "/property/%s" % name)

    def attr(self, name):
        return self._call("GET", "/attribute/%s" % name)


class Browser:
    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.port = _free_port()
        self.log = open(self.tmp / "chromedriver.log", "w")
        self.driver = subprocess.Popen([CHROMEDRIVER, "--port=%d" % self.port,
                                        "--allowed-ips=127.0.0.1"],
                                       stdout=self.log, stderr=subprocess.STDOUT)
        self.base = "http://127.0.0.1:%d" % self.port
        deadline = time.time() + 10
        while True:
            try:
                with urllib.request.urlopen(self.base + "/status", timeout=1) as r:
                    if json.load(r)["value"]["ready"]:
                        break
            except (OSError, ValueError, KeyError):
                pass
            if self.driver.poll() is not None or time.time() > deadline:
                self.close()
                raise WebDriverError("chromedriver did not start: " +
                                     (self.tmp / "chromedriver.log").read_text())
            time.sleep(0.05)
        profile = self.tmp / "chromium-profile"
        profile.mkdir(exist_ok=True)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM,
                                   "args": FLAGS + ["--user-data-dir=%s" % profile]}}}}
        try:
            self.session = self._raw("POST", "/session", caps)["value"]["sessionId"]
        except Exception:
            self.close()
            raise

    def _raw(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            answer = e.read().decode(errors="replace")
            raise WebDriverError("%s %s: %d %s" % (method, path, e.code, answer[:2000])) from None

    def _call(self, method, path, body=None):
        return self._raw(method, "/session/%s%s" % (self.session, path), body)["value"]

    def get(self, url):
        self._call("POST", "/url", {"url": url})

    def find(self, css):
        return Element(self, self._call("POST", "/element",
                                        {"using": "css selector", "value": css})[ELEMENT])

    def find_all(self, css):
        return [Element(self, e[ELEMENT]) for e in
                self._call("POST", "/elements", {"using": "css selector", "value": css})]

    def run(self, script, *args):
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait(self, condition, timeout=15, what="the condition"):
        deadline = time.time() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.time() > deadline:
                raise AssertionError("%s did not hold within %s s" % (what, timeout))
            time.sleep(0.05)

    def screenshot(self, path):
        Path(path).write_bytes(base64.b64decode(self._call("GET", "/screenshot")))

    def close(self):
        try:
            if getattr(self, "session", None):
                self._raw("DELETE", "/session/%s" % self.session)
        except Exception:
            pass
        if self.driver.poll() is None:
            self.driver.terminate()
            try:
                self.driver.wait(5)
            except subprocess.TimeoutExpired:
                self.driver.kill()
                self.driver.wait()
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
