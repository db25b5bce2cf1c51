"""Registry behaviour and configuration composition (every YAML preset and baseline composes)."""

import pytest
import torch

from genbench import registry
from genbench.config import GROUPS, baseline_names, compose, group_options, to_plain
from genbench.errors import UnknownComponentError, UserError


def test_builtin_components_are_registered():
    assert "ncsnpp" in registry.names("backbone")
    assert "ddgan" in registry.names("sampler")
    assert "digits" in registry.names("dataset")
    assert "pixel" in registry.names("latent")
    assert registry.names("backbone", "ncsn*") == ["ncsnpp"]
    assert "backbone/ncsnpp" in registry.names()
    assert {"small", "large"} <= set(registry.names("discriminator"))
    assert "discriminator/small" in registry.names()


def test_discriminators_are_built_through_the_registry():
    D = registry.create("discriminator", "small", in_channels=4, num_layers=3)
    assert sum(p.numel() for p in D.parameters()) == 7_628_545  # LDDGAN CIFAR-10 (official)
    with pytest.raises(UserError, match="num_layers=5; use 3 or 4"):
        registry.create("discriminator", "small", in_channels=3, num_layers=5)
    with pytest.raises(UserError, match="takes no argument"):
        registry.create("discriminator", "large", in_channels=3, width=8)


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownComponentError, match="did you mean ncsnpp"):
        registry.create("backbone", "ncsnp", in_channels=1, resolution=8)
    with pytest.raises(UnknownComponentError, match="kinds are"):
        registry.names("widget")


def test_register_and_create_roundtrip():
    @registry.register("latent", "test_negate", paper="none", tags=("test",))
    def test_negate(scale: float = 1.0):
        """Negate (test only)."""
        return lambda x: -scale * x

    entry = registry.get("latent", "test_negate")
    assert entry.description == "Negate (test only)." and entry.tags == ("test",)
    fn = registry.create("latent", "test_negate", scale=2.0)
    assert torch.equal(fn(torch.ones(1)), torch.tensor([-2.0]))
    with pytest.raises(UserError, match="takes no argument"):
        registry.create("latent", "test_negate", width=3)


def test_registering_a_different_factory_twice_fails():
    @registry.register("metric", "test_dup")
    def first():
        return 1

    with pytest.raises(ValueError, match="already registered"):
        @registry.register("metric", "test_dup")
        def second():
            return 2


@pytest.mark.parametrize("group", GROUPS)
def test_every_preset_composes(group):
    for option in group_options(group):
        extra = ["dataset.root=/data/images"] if option == "image_folder" else []
        cfg = to_plain(compose([f"{group}={option}", *extra]))
        assert cfg["presets"][group] == option
        if group in registry.KINDS:
            registry.get(group, cfg[group]["name"])  # the preset names a registered component


@pytest.mark.parametrize("name", baseline_names())
def test_every_baseline_composes(name):
    cfg = to_plain(compose([f"baseline={name}"]))
    assert cfg["experiment"] == name
    assert "paper" in cfg and cfg["paper"]["source"]


def test_unknown_preset_is_one_line_with_suggestions():
    with pytest.raises(UserError) as err:
        compose(["backbone=ncsnpp_digit"])
    assert "did you mean ncsnpp_digits" in str(err.value) and "\n" not in str(err.value)


def test_registered_component_without_preset_is_selectable():
    @registry.register("sampler", "test_only_sampler")
    def test_only_sampler(steps: int = 3, eta: float = 0.5):
        return None

    cfg = to_plain(compose(["sampler=test_only_sampler", "sampler.eta=0.25"]))
    assert cfg["sampler"] == {"name": "test_only_sampler", "steps": 3, "eta": 0.25}


def test_missing_mandatory_value_names_the_key():
    with pytest.raises(UserError, match="dataset.root is required"):
        to_plain(compose(["dataset=image_folder"]))
