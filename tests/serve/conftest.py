"""A small store with two engine versions, a way to add a broken one, and a live server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import httpx  # noqa: E402

from recset import Engine  # noqa: E402
from recset.data import Dataset  # noqa: E402
from recset.data.synthetic import SyntheticConfig, generate  # noqa: E402
from recset.storage import Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token"


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    syn = generate(SyntheticConfig(n_items=300, n_users=120, n_events=9000, seed=5))
    return Dataset.from_frames(syn.catalog, syn.events)


@pytest.fixture(scope="session")
def built_store(tmp_path_factory: pytest.TempPathFactory, dataset: Dataset) -> Path:
    """engine v1 and v2 (active), built from one dataset."""
    path = tmp_path_factory.mktemp("serve") / "store"
    engine = Engine.build(dataset)
    engine.save(path, dataset=dataset)
    engine.save(path, dataset=dataset)
    return path


@pytest.fixture
def store(built_store: Path, tmp_path: Path) -> Path:
    """A private copy of the two-version store (tests activate versions)."""
    path = tmp_path / "store"
    shutil.copytree(built_store, path)
    return path


def save_broken_engine(store: Path, *, activate: bool = True) -> int:
    """Register an engine version whose files cannot load; return its version."""

    def write(directory: Path) -> None:
        (directory / "engine.json").write_text("{ not json", encoding="utf-8")

    with Store.open(store) as st:
        return st.save_artifact("engine", write, activate=activate).version


def activate(store: Path, version: int) -> None:
    with Store.open(store) as st:
        st.activate("engine", version)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    store: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_server(store: Path, log: Path, *, workers: int, poll: float) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "RECSET_ADMIN_TOKEN": TOKEN,
    }
    cmd = [sys.executable, "-m", "recset.cli", "serve", "--store", str(store), "--port", str(port)]
    cmd += ["--workers", str(workers), "--poll-interval", str(poll), "--no-neural"]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    server = Server(f"http://127.0.0.1:{port}", process, log, store)
    deadline = time.monotonic() + 90
    with server.client() as c:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"the server exited:\n{server.output()}")
            try:
                # every worker has loaded: each exposes its own version gauge (one per pid)
                if c.get("/readyz").status_code == 200 and _loaded_workers(c) >= workers:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    stop_server(server)
    raise AssertionError(f"the server did not get ready:\n{server.output()}")


def _loaded_workers(c: httpx.Client) -> int:
    """Workers that have loaded their engine (at startup: one version gauge line each)."""
    return c.get("/metrics").text.count('recset_engine_version{artifact="engine"')


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def server(built_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`recset serve` with two workers on a copy of the store, polling every 0.3 s."""
    base = tmp_path_factory.mktemp("live")
    path = base / "store"
    shutil.copytree(built_store, path)
    srv = start_server(path, base / "server.log", workers=2, poll=0.3)
    yield srv
    stop_server(srv)
