"""Config loading: defaults, the shipped default.toml, and clear errors."""

from pathlib import Path

import pytest

from recset.config import Config, load_config
from recset.errors import ConfigError
from recset.recall import PopularConfig

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_default_toml_equals_builtin_defaults() -> None:
    shipped = load_config(ROOT / "config" / "default.toml")
    assert shipped.hash() == Config(sources={"popular": PopularConfig()}).hash()


def test_source_settings(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "[sources.popular]\nhalf_life_days = 7\nscope = 'global'\n"))
    pop = cfg.sources["popular"]
    assert isinstance(pop, PopularConfig) and pop.half_life_days == 7 and pop.scope == "global"
    assert cfg.hash() != load_config(None).hash()


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[sources.nope]\n", r"unknown source 'sources.nope'; allowed values: \['popular'"),
        (
            "[sources.popular]\nhalf_lif = 3\n",
            r"unknown key 'sources.popular.half_lif'; allowed keys: \[.*'half_life_days'",
        ),
        ("[sources.popular]\nscope = 'planet'\n", r"key 'sources.popular.scope'"),
        (
            "[sources.popular.event_weights]\nclick = 1\n",
            r"unknown key 'sources.popular.event_weights.click'; allowed keys: \['add_to_cart'",
        ),
        ("[buld]\n", r"unknown section 'buld'; allowed sections: \['build', 'sources'\]"),
        ("[build]\nfallback = 'magic'\n", r"'build.fallback': unknown source 'magic'"),
        ("[build]\ncandidates_per_seed = 0\n", r"key 'build.candidates_per_seed'"),
        ("not = [toml", r"not valid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, pattern: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "absent.toml")
