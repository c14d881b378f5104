"""Config loading: defaults, the shipped default.toml, mixes, overrides and clear errors."""

from pathlib import Path

import numpy as np
import pytest

from recset.config import Config, config_from_dict, load_config
from recset.errors import ConfigError
from recset.recall import PopularConfig

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_default_toml_equals_builtin_defaults() -> None:
    shipped = load_config(ROOT / "config" / "default.toml")
    builtin = load_config(None)
    assert shipped.mixes() == builtin.mixes()
    assert shipped.build == builtin.build
    assert shipped.ranker == builtin.ranker
    for name, (kind, cfg) in builtin.source_configs().items():
        assert shipped.source_configs()[name] == (kind, cfg), name


def test_source_settings_and_instances(tmp_path: Path) -> None:
    cfg = load_config(
        _write(
            tmp_path,
            "[sources.popular]\nhalf_life_days = 7\nscope = 'global'\n"
            "[sources.popular_brand]\ntype = 'popular'\nmatch_aspect = 'brand'\n"
            "[mix]\nsources = ['co_purchase', 'popular_brand', 'popular']\n",
        )
    )
    pop = cfg.sources["popular"]
    assert isinstance(pop, PopularConfig) and pop.half_life_days == 7 and pop.scope == "global"
    specs = cfg.source_configs()
    assert specs["popular_brand"][0] == "popular"
    assert specs["popular_brand"][1].match_aspect == "brand"  # type: ignore[attr-defined]
    assert {"co_purchase", "compatibility", "substitutes"} <= set(specs)
    assert cfg.hash() != load_config(None).hash()


def test_related_scope_pulls_in_its_dependency(tmp_path: Path) -> None:
    cfg = load_config(
        _write(tmp_path, "[sources.popular]\nscope = 'related_categories'\n[mix]\nfilters = []\n")
    )
    assert "related_categories" in cfg.source_configs()


def test_category_overrides_most_specific_wins(tmp_path: Path) -> None:
    cfg = load_config(
        _write(
            tmp_path,
            '[categories."A"]\nfilters = []\n'
            '[categories."A > B"]\nsources = ["popular"]\n'
            '[categories."c9"]\nfusion = "sequential"\n',
        )
    )
    mixes = list(cfg.mixes().values())
    idx = cfg.mix_for_categories(
        np.array(["c1", "c2", "c3", "c9", "c5"], dtype=object),
        np.array(["A > X", "A > B > C", "AB > C", "A > B", None], dtype=object),
    )
    assert idx.tolist() == [1, 2, 0, 3, 0]
    # the override changes exactly its keys; the rest is the default mix
    assert mixes[1].filters == () and mixes[1].sources == mixes[0].sources
    assert mixes[2].sources == ("popular",) and mixes[2].filters == mixes[0].filters
    assert mixes[3].fusion == "sequential"


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            "[sources.nope]\n",
            r"unknown source type 'sources.nope'; allowed values: \['bought_after', 'co_purchase'",
        ),
        ("[sources.x]\ntype = 'nope'\n", r"unknown source type 'sources.x.type' 'nope'"),
        (
            "[sources.popular]\nhalf_lif = 3\n",
            r"unknown key 'sources.popular.half_lif'; allowed keys: \[.*'half_life_days'",
        ),
        ("[sources.popular]\nscope = 'planet'\n", r"key 'sources.popular.scope'"),
        (
            "[sources.popular.event_weights]\nclick = 1\n",
            r"unknown key 'sources.popular.event_weights.click'; allowed keys: \['add_to_cart'",
        ),
        ("[buld]\n", r"unknown section 'buld'; allowed sections: \['build', 'categories'"),
        ("[build]\nfallback = 'magic'\n", r"'build.fallback': unknown source 'magic'"),
        ("[build]\ncandidates_per_seed = 0\n", r"key 'build.candidates_per_seed'"),
        ("[mix]\nsources = ['co_purchse']\n", r"'mix.sources': unknown source 'co_purchse'"),
        ("[mix]\nfilters = ['popular']\n", r"'mix.filters': unknown filter 'popular'; allowed"),
        ("[mix]\nfusion = 'avg'\n", r"key 'mix.fusion'"),
        ("[mix.limits]\nco_veiw = 3\n", r"'mix.limits.co_veiw': unknown source"),
        # negative weights / limits used to pass: a negative limit sliced all but the last
        # candidates, a negative weight broke the fill's floor below the fused scores
        ("[mix.weights]\npopular = -0.5\n", r"key 'mix.weights.popular': .*greater than or eq"),
        ("[mix.limits]\nco_view = -1\n", r"key 'mix.limits.co_view': .*greater than or equal"),
        ('[categories."A"]\nweights = { popular = nan }\n', r"weights.popular': .*finite"),
        ("[mix]\nsorces = []\n", r"unknown key 'mix.sorces'; allowed keys: \['filters'"),
        ('[categories."A"]\nfilters = ["x"]\n', r"'categories.\"A\".filters': unknown filter 'x'"),
        ('[categories."A"]\nsauce = 1\n', r"unknown key 'categories.\"A\".sauce'"),
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


def test_config_round_trips_through_dict() -> None:
    from recset.config import config_from_dict

    cfg = load_config(ROOT / "config" / "default.toml")
    again = config_from_dict(cfg.to_dict())
    assert again.hash() == cfg.hash()
    assert isinstance(again, Config)


def test_source_configs_validate_through_a_union_built_from_the_registry() -> None:
    """The sources' settings are one pydantic discriminated union on ``type`` assembled from
    the registry: a source registered later (a plug-in) takes part with no list to edit."""
    from recset.recall import (
        RECALL_SETS,
        RecallBase,
        SourceConfig,
        register_recall,
        registered_recall_sets,
        source_config_union,
        validate_source_config,
    )

    schema = source_config_union().json_schema()
    assert set(schema["discriminator"]["mapping"]) == set(registered_recall_sets())
    cfg = validate_source_config("popular", {"scope": "global"})
    assert type(cfg) is PopularConfig and cfg == PopularConfig(scope="global")

    class ToyConfig(SourceConfig):
        depth: int = 1

    with RECALL_SETS.isolated():

        @register_recall("toy_union_source")
        class Toy(RecallBase):
            Config = ToyConfig

            def fit(self, dataset, signals=None, *, fitted=None):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
                return self

            def recall_many(self, seeds, n):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
                raise NotImplementedError

        config = config_from_dict({"sources": {"t": {"type": "toy_union_source", "depth": 3}}})
        assert config.sources["t"] == ToyConfig(depth=3)
        with pytest.raises(ConfigError, match=r"key 'sources.t.depth'"):
            config_from_dict({"sources": {"t": {"type": "toy_union_source", "depth": "x"}}})
    mapping = source_config_union().json_schema()["discriminator"]["mapping"]
    assert "toy_union_source" not in mapping
