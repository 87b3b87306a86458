"""The package as a user gets it: a wheel built from the sources, installed into a fresh virtual
environment outside the repository, builds the default site and serves it with nothing read from
the checkout (templates and the engine's bundles are package data)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

from webllm_build.paths import REPO_DIR, WEB_DIR
from webllm_build.verify.sitepage import SitePage


def run(*args: str | Path, cwd: Path, timeout: float = 900) -> str:
    # No PYTHONPATH, and a working directory outside the checkout: only the venv's own packages.
    # And the product's own link (conftest.py speeds up the suite's).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WEBLLM_BUILD_FAST_LINK")}
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


CHECK_REQUIREMENTS = """
from importlib.metadata import requires, version
from packaging.requirements import Requirement
for text in requires("webllm_build"):
    need = Requirement(text)
    if need.marker is None or need.marker.evaluate({"extra": ""}):
        assert need.specifier.contains(version(need.name), prereleases=True), (text, version(need.name))
"""


def copy_sources(destination: Path) -> None:
    """The files git tracks (or would), as a clean clone has them; node_modules is linked, not copied."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO_DIR,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO_DIR / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    # The wheel build runs the engine's JS build, which needs the npm packages `make setup` installed.
    (destination / "web" / "node_modules").symlink_to(WEB_DIR / "node_modules")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def wait_for_server(url: str, server: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert server.poll() is None, server.communicate()
        try:
            fetch(url)
            return
        except OSError:
            assert time.monotonic() < deadline, f"webllm_build serve never answered at {url}"
            time.sleep(0.2)


def test_wheel_installs_outside_the_repo_and_builds_and_serves_the_default_site(tmp_path, browser):
    sources, wheels, venv, work = (tmp_path / d for d in ("src", "wheels", "venv", "work"))
    work.mkdir()
    copy_sources(sources)
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        wheels,
        sources,
        cwd=work,
    )
    (wheel,) = wheels.glob("webllm_build-*.whl")

    run(sys.executable, "-m", "venv", venv, cwd=work)
    python = venv / "bin" / "python"
    # The dependencies (TVM, tokenizers, ...) come from this environment rather than ~1 GB of downloads:
    # a path file makes them importable, and the wheel itself is installed with no index.
    purelib = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=work).strip()
    )
    (purelib / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=work)
    # Every dependency the wheel declares (extras aside) is met in the new environment.
    run(python, "-c", CHECK_REQUIREMENTS, cwd=work)
    where = run(python, "-c", "import webllm_build.paths as p; print(p.__file__, p.INSTALLED)", cwd=work)
    assert where.split() == [str(purelib / "webllm_build" / "paths.py"), "True"]

    command = venv / "bin" / "webllm_build"
    output = run(command, "site", "--out", "site", cwd=work)
    assert "Try it: webllm_build serve site" in output
    site = json.loads((work / "site" / "site.json").read_text())
    (model,) = site["models"]
    assert model["id"] == "smollm2-135m-q4f32_asym"

    with socket.socket() as probe:  # a free port for the server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [command, "serve", "site", "--port", str(port)],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_server(url, server)
        # Every file of the model arrives intact over HTTP, as the index describes it.
        base = url + model["base_url"]
        index = json.loads(fetch(base + "webllm-model.json"))
        for entry in index["files"].values():
            assert hashlib.sha256(fetch(base + entry["path"])).hexdigest() == entry["sha256"], entry["path"]
        # The page starts in Chromium and offers the model.
        page = SitePage(browser, url)
        assert [m["id"] for m in page.models] == [model["id"]]
        assert not page.log.errors, page.log.tail()
        page.page.context.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
