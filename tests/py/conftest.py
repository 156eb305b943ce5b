"""Fixtures for the third-party client conformance checks.

Each test module gets its own rcsim process (``--listen 127.0.0.1:0 --seed demo``),
started from ``$RCSIM_BIN`` (default: ``<repo>/target/debug/rcsim``). The fixture
reads the ``rcsim listening on http://127.0.0.1:<port>`` line from stdout with a
timeout, yields an :class:`Rcsim` handle and kills the process afterwards.

rcsim's stderr goes to a log file; when a test that used the fixture fails, the
tail of that log is attached to the failure report.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "rcsim"
STARTUP_TIMEOUT_S = float(os.environ.get("RCSIM_STARTUP_TIMEOUT", "20"))
LISTEN_RE = re.compile(r"^rcsim listening on (http://127\.0\.0\.1:(\d+))\s*$")

ADMIN_USER, ADMIN_PASSWORD = "super", "123qwe"
# Seed `demo` (see the rcsim CLI): users with `<name>-pw` passwords, all in GENERAL.
DEMO_PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
HTTP_TIMEOUT_S = 10


def rcsim_bin() -> Path:
    raw = os.environ.get("RCSIM_BIN")
    if not raw:
        return DEFAULT_BIN
    p = Path(raw)
    return p if p.is_absolute() else (REPO_ROOT / p)


@dataclass
class Rcsim:
    base_url: str
    port: int
    log_path: Path
    proc: subprocess.Popen = field(repr=False)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/websocket"

    def api(self, route: str) -> str:
        return f"{self.base_url}/api/v1/{route}"

    def stderr_tail(self, max_bytes: int = 8000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError as e:  # pragma: no cover - diagnostics only
            return f"<cannot read {self.log_path}: {e}>"
        return data[-max_bytes:].decode("utf-8", "replace")

    def rest_login(self, username: str, password: str) -> dict:
        """Plain REST login (section 1.4); returns the `data` object."""
        r = requests.post(
            self.api("login"),
            json={"user": username, "password": password},
            timeout=HTTP_TIMEOUT_S,
        )
        assert r.status_code == 200, f"login {username}: HTTP {r.status_code} {r.text}"
        body = r.json()
        assert body.get("status") == "success", body
        return body["data"]


def _start_rcsim(log_path: Path, extra_args: tuple[str, ...] = ()) -> Rcsim:
    binary = rcsim_bin()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.fail(
            f"rcsim binary not found or not executable at {binary} "
            "(build it with `cargo build -p rcsim` or set RCSIM_BIN)",
            pytrace=False,
        )
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(binary), "--listen", "127.0.0.1:0", "--admin", f"{ADMIN_USER}:{ADMIN_PASSWORD}", "--seed", "demo", *extra_args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    log.close()

    lines: "queue.Queue[bytes | None]" = queue.Queue()

    def pump() -> None:
        # Keep draining stdout for the life of the process so it never blocks.
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="rcsim-stdout", daemon=True).start()

    seen: list[str] = []
    try:
        while True:
            try:
                raw = lines.get(timeout=STARTUP_TIMEOUT_S)
            except queue.Empty:
                raise RuntimeError(f"no 'rcsim listening on' line within {STARTUP_TIMEOUT_S}s")
            if raw is None:
                raise RuntimeError(f"rcsim exited (code {proc.wait()}) before listening")
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            seen.append(text)
            m = LISTEN_RE.match(text)
            if m:
                return Rcsim(base_url=m.group(1), port=int(m.group(2)), log_path=log_path, proc=proc)
    except RuntimeError as e:
        _stop(proc)
        tail = log_path.read_bytes()[-4000:].decode("utf-8", "replace")
        pytest.fail(f"{e}\nstdout so far: {seen!r}\nstderr tail:\n{tail}", pytrace=False)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def rcsim_factory(request, tmp_path_factory):
    """Start extra rcsim instances with extra CLI args; all are stopped with the module."""
    started: list[Rcsim] = []
    active = request.config.stash.setdefault(_ACTIVE_KEY, [])

    def start(*extra_args: str) -> Rcsim:
        log_path = tmp_path_factory.mktemp("rcsim") / "rcsim.stderr.log"
        sim = _start_rcsim(log_path, tuple(extra_args))
        started.append(sim)
        active.append(sim)
        return sim

    try:
        yield start
    finally:
        for sim in started:
            _stop(sim.proc)
            active.remove(sim)


@pytest.fixture(scope="module")
def rcsim(rcsim_factory):
    """One rcsim (`--seed demo`, default settings) per test module."""
    return rcsim_factory()


_ACTIVE_KEY = pytest.StashKey[list]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    names = getattr(item, "fixturenames", ())
    if report.failed and ("rcsim" in names or "rcsim_factory" in names):
        for sim in item.config.stash.get(_ACTIVE_KEY, []):
            report.sections.append((f"rcsim stderr tail ({sim.log_path})", sim.stderr_tail()))
