"""The engine under Deno (WebGPU through wgpu): a headless GPU runtime beside Chromium.

`launch_deno()` gives a session with the same `open(url)` as the Chromium one (browser.py), so
check, bench and the pytest fixture drive a site the same way on either runtime. Each opened
"page" is one Deno process running `deno_page.js` against the served site; it answers the
Playwright calls those drivers use (`evaluate`, `wait_for_function`, `reload`, `context.close`).

Deno reaches GPUs that headless Chromium cannot use here (wgpu over Vulkan): Mesa's lavapipe on
a machine without a GPU, which offers `shader-f16`, and real GPUs on a server.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from webllm_build.compiler.toolchain import find_deno
from webllm_build.errors import BrowserError
from webllm_build.verify.browser import PageLog

DRIVER = Path(__file__).with_name("deno_page.js")
INSTALL_LAVAPIPE = "sudo apt-get install -y mesa-vulkan-drivers   (or: make setup)"
# No reply within this long means the process is stuck; longer work has its own timeouts.
CALL_TIMEOUT_S = 3600


class DenoPage:
    """One Deno process on a site: a tab's worth of state, with its own storage (Cache API)."""

    def __init__(self, deno: str, url: str, log: PageLog) -> None:
        self.url, self.log, self._deno = url, log, deno
        # Deno keeps a location's Cache API storage under DENO_DIR: one per page, so every page
        # starts empty like a fresh browser context, and reload() (same DENO_DIR) finds it warm.
        self._deno_dir = tempfile.mkdtemp(prefix="webllm_build-deno-")
        self._start()

    @property
    def context(self) -> DenoPage:
        return self  # SitePage closes "its context": here that is the process and its storage

    def _start(self) -> None:
        # No update check (a closed network would only stall it), no colour codes in the log.
        env = {**os.environ, "DENO_DIR": self._deno_dir, "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1"}
        env.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())  # else Mesa warns on every start
        self._process = subprocess.Popen(
            [
                self._deno,
                "run",
                "--quiet",
                "--no-prompt",
                "--allow-net",
                "--allow-import",
                "--location",
                self.url,
                str(DRIVER),
                self.url,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._answers: dict[int, queue.Queue] = {}
        self._next_id = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._read_answers, args=(self._process,), daemon=True).start()
        threading.Thread(target=self._read_log, args=(self._process,), daemon=True).start()

    def _read_answers(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            message = json.loads(line)
            with self._lock:
                box = self._answers.pop(message["id"], None)
            if box is not None:
                box.put(message)
        with self._lock:  # the process ended: every caller still waiting gets an error
            for box in self._answers.values():
                box.put({"error": f"Deno exited (status {process.wait()})"})
            self._answers.clear()

    def _read_log(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            text = line.rstrip("\n")
            is_error = text.startswith(("error:", "Uncaught"))
            (self.log.errors if is_error else self.log.console).append(
                f"[pageerror] {text}" if is_error else f"[log] {text}"
            )

    def evaluate(self, expression: str, arg: Any = None) -> Any:
        """As Playwright's page.evaluate: a function's source is called with `arg`."""
        box: queue.Queue = queue.Queue()
        with self._lock:
            if self._process.poll() is not None:
                raise BrowserError(f"Deno exited (status {self._process.returncode})\n{self.log.tail()}")
            self._next_id += 1
            call_id = self._next_id
            self._answers[call_id] = box
            request = json.dumps({"id": call_id, "expression": expression, "arg": arg})
            self._process.stdin.write(request + "\n")
            self._process.stdin.flush()
        try:
            message = box.get(timeout=CALL_TIMEOUT_S)
        except queue.Empty:
            raise BrowserError(f"Deno did not answer within {CALL_TIMEOUT_S} s\n{self.log.tail()}") from None
        if "error" in message:
            raise BrowserError(message["error"])
        return message["value"]

    def wait_for_function(self, expression: str, timeout: float = 30_000) -> None:
        deadline = time.monotonic() + timeout / 1000
        while not self.evaluate(expression):
            failed = self.evaluate("globalThis.webllmStartError ?? null")
            if failed:
                raise BrowserError(f"The engine did not start under Deno: {failed}")
            if time.monotonic() > deadline:
                raise BrowserError(
                    f"{expression} did not hold within {timeout / 1000:.0f} s\n{self.log.tail()}"
                )
            time.sleep(0.05)

    def reload(self) -> None:
        """A second visit: a new process with this page's storage kept."""
        self._stop()
        self._start()

    def _stop(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def close(self) -> None:
        self._stop()
        shutil.rmtree(self._deno_dir, ignore_errors=True)


class DenoSession:
    """Opens sites in Deno, as BrowserSession opens them in Chromium."""

    def __init__(self, deno: str) -> None:
        self.deno = deno
        self._pages: list[DenoPage] = []

    def open(
        self,
        url: str,
        *,
        ready: str = "window.webllmAppReady === true",
        timeout_ms: int = 60_000,
        **_browser_only: Any,
    ) -> tuple[DenoPage, PageLog]:
        log = PageLog()
        page = DenoPage(self.deno, url, log)
        self._pages.append(page)
        try:
            page.wait_for_function(ready, timeout=timeout_ms)
            adapter = page.evaluate("globalThis.webllmApp?.adapter ?? null")
        except BrowserError as exc:
            page.close()
            raise BrowserError(f"The site {url} did not start under Deno: {exc}") from None
        if adapter is not None and not adapter.get("available"):
            page.close()
            raise BrowserError(
                f"Deno found no WebGPU adapter ({adapter.get('reason')}). On a machine without a GPU, "
                f"install Mesa's lavapipe: {INSTALL_LAVAPIPE}"
            )
        return page, log

    def close(self) -> None:
        for page in self._pages:
            page.close()


@contextmanager
def launch_deno() -> Iterator[DenoSession]:
    session = DenoSession(find_deno().path)
    try:
        yield session
    finally:
        session.close()
