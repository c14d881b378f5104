"""`recset versions`, `recset activate`, and `recset serve` without the serve extra."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import run_cli as run
from .conftest import ROOT, save_broken_engine


def test_versions_and_activate_roll_back(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "versions", "--store", str(store), "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["release"], r["engine"], r["active"]) for r in rows] == [(1, 1, False), (2, 2, True)]
    code, out, err = run(capsys, "versions", "--store", str(store), "--json", "--artifacts")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["artifact"], r["version"], r["status"]) for r in rows] == [
        ("engine", 1, "retired"),
        ("engine", 2, "active"),
    ]
    code, out, err = run(capsys, "activate", "1", "--store", str(store))
    assert code == 0 and "release 1 (engine v1) is active" in out, err
    code, out, _ = run(capsys, "versions", "--store", str(store))
    assert out.splitlines()[0].startswith("* release 1") and "engine v1" in out.splitlines()[0]
    code, out, err = run(capsys, "activate", "9", "--store", str(store))
    assert code == 2 and "known releases: [1, 2]" in err
    code, out, err = run(capsys, "activate", "9", "--artifact", "engine", "--store", str(store))
    assert code == 2 and "known versions: [1, 2]" in err
    code, out, err = run(capsys, "activate", "2", "--artifact", "engine", "--store", str(store))
    assert code == 0 and "release 3 (engine v2) is active" in out, err


def test_serve_refuses_a_store_without_a_loadable_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "serve", "--store", str(tmp_path / "nothing"))
    assert code == 2 and "nothing" in err
    code, _, err = run(capsys, "serve")
    assert code == 2 and "--store" in err


def test_serve_without_the_extra_says_what_to_install(
    store: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "recset.serve" or m.startswith("recset.serve.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if not installed
    code, _, err = run(capsys, "serve", "--store", str(store))
    assert code == 1 and "pip install 'recset[serve]'" in err and "fastapi" in err


@pytest.mark.slow
def test_the_core_runs_without_the_serve_extra(store: Path) -> None:
    code = (
        "import sys\n"
        "for m in ('fastapi', 'starlette', 'uvicorn', 'prometheus_client'):\n"
        "    sys.modules[m] = None\n"
        "from recset import Engine\n"
        "import recset.cli\n"
        f"print(len(Engine.load({str(store)!r}).recommend('x', k=3)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert out.returncode == 0 and out.stdout.strip() == "3", out.stderr


def test_a_broken_version_is_listed_but_serving_refuses_it(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recset.serve import EngineHolder

    v = save_broken_engine(store)
    code, out, _ = run(capsys, "versions", "--store", str(store))
    assert f"v{v}" in out
    holder = EngineHolder(str(store))
    with pytest.raises(Exception, match=f"engine v{v}.*load failed"):
        holder.start()


def test_help_of_the_serving_commands(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("serve", "versions", "activate", "prune"):
        code, out, _ = run(capsys, cmd, "--help")
        assert code == 0 and "--store" in out


def test_a_reload_loads_the_release_the_store_activates(store: Path) -> None:
    from recset.serve import EngineHolder
    from recset.storage import Store

    holder = EngineHolder(str(store))
    served = holder.start()
    assert served.engine.version is not None and served.engine.version.pins == {"engine": 2}
    with Store.open(store) as st:
        staged = st.create_release({"engine": 1}, activate=False, note="test")
    assert holder.refresh().outcome == "unchanged"  # a staged release is not served
    with Store.open(store) as st:
        st.activate_release(staged.id)
    assert holder.refresh().outcome == "loaded"
    assert holder.served.versions == {"engine": 1}
    assert holder.served.engine.version.id == staged.id  # type: ignore[union-attr]
    holder.close()
