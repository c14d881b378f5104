"""Damaged artifacts (issue 12): a version whose files were truncated, transposed, reordered
or tampered with is refused at load with a StorageError naming the file, never served and
never a traceback (the CLI exits 2 with one error line)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from recset import StorageError
from recset.cli import main
from recset.engine import Engine
from recset.storage import Store
from recset.testing import releases

LISTS = "artifacts/engine/v1/mixer/lists"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store holding one engine version (copied by every test)."""
    root = tmp_path_factory.mktemp("tampered")
    prepared = releases.prepare(tmp_path_factory.getbasetemp() / "release-datasets")
    prepared.engine_a.save(root / "store", dataset=prepared.a)
    return root / "store"


@pytest.fixture
def store(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine, tmp_path / "store")
    return tmp_path / "store"


def _npy(rel: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    def tamper(store: Path) -> None:
        np.save(store / rel, change(np.load(store / rel)))

    return tamper


# Each case of the harness (recset.testing.releases.tamper_cases) and what the refusal says.
MESSAGES = {
    "transposed lists.item": r"lists\.item\.npy: holds an array of shape \(\d+, \d+\).*transposed",
    "truncated lists.score": r"lists\.score\.npy: .*truncated",
    "reversed lists.ptr": r"lists\.ptr\.npy: its sha256 differs from the manifest",
    "non-monotone lists.ptr": r"lists\.ptr\.npy: its sha256 differs",
    "corrupt engine.json": r"engine\.json: \d+ bytes, the manifest records",
    "flipped byte in a source": r"co_purchase/recall_set\.npz: its sha256 differs",
    "deleted lists.src": r"lists\.src\.npy: the file is missing",
    "manifest edited to match": r"manifest\.json: the manifest differs from the checksum in the",
    "manifest deleted": r"manifest\.json: the manifest is missing",
}


def test_every_harness_case_has_a_message() -> None:
    assert sorted(MESSAGES) == sorted(releases.tamper_cases())


def _refused_by_cli(store: Path, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["recommend", "--store", str(store), "--examples", "1"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err
    return err


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_damaged_version_is_refused(
    store: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Engine.load(store)  # loads before the damage
    message = MESSAGES[case]
    releases.tamper_cases()[case].apply(store / "artifacts/engine/v1")
    with pytest.raises(StorageError, match=message) as exc:
        Engine.load(store)
    assert "damaged and was not loaded" in str(exc.value)
    assert "error: " in _refused_by_cli(store, capsys)
    with Store.open(store) as st, pytest.raises(StorageError, match=message):
        st.activate("engine", 1)  # never (re)activated either


def _unchecked(store: Path) -> None:
    """Make v1 look saved by a recset without manifests."""
    engine = sa.create_engine(f"sqlite:///{store / 'recset.sqlite'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE recset_artifact SET manifest = NULL"))
    engine.dispose()


STRUCTURE: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str, str]] = {
    "reversed ptr": (lambda a: a[::-1].copy(), "ptr", r"'ptr' is not a monotone pointer array"),
    "item ids past the catalog": (lambda a: a + 10_000, "item", r"item ids outside \[-1, \d+\)"),
    "transposed item": (lambda a: np.ascontiguousarray(a.T), "item", r"the lists have shape"),
    "truncated src": (lambda a: a[:-1].copy(), "src", r"'src' has \d+ entries"),
}


@pytest.mark.parametrize("case", sorted(STRUCTURE))
def test_structure_checked_without_manifest(
    store: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A version from before manifests still gets the cheap structural checks."""
    change, name, message = STRUCTURE[case]
    _unchecked(store)
    _npy(f"{LISTS}/lists.{name}.npy", change)(store)
    with pytest.raises(StorageError, match=message):
        Engine.load(store)
    assert "damaged" in _refused_by_cli(store, capsys)


def test_tampered_torch_file_is_refused(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")

    def write(directory: Path) -> None:
        torch.save({"w": torch.arange(64, dtype=torch.float32)}, directory / "weights.pt")

    with Store.open(store) as st:
        st.save_artifact("personalizer", write)
    raw = bytearray((store / "artifacts/personalizer/v1/weights.pt").read_bytes())
    raw[-1] ^= 0xFF
    (store / "artifacts/personalizer/v1/weights.pt").write_bytes(bytes(raw))
    with pytest.raises(StorageError, match=r"personalizer/v1/weights\.pt: its sha256 differs"):
        Engine.load(store)
    assert "weights.pt" in _refused_by_cli(store, capsys)


def test_recorded_path_outside_the_artifact_dir_is_refused(store: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{store / 'recset.sqlite'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE recset_artifact SET path = '../../etc'"))
    engine.dispose()
    with pytest.raises(StorageError, match=r"the path '\.\./\.\./etc' leads outside"):
        Engine.load(store)


def test_an_intact_copy_loads_and_answers_the_same(pristine: Path, store: Path) -> None:
    """The checks refuse damage only: the untouched copy serves what the original serves."""
    assert releases.served(str(store)).answers == releases.served(str(pristine)).answers
