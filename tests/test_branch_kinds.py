"""Kinds of retraining branch, each one class: the grid, the rules' params, the fingerprints and the config checks
follow from the declaration, for the built-in kinds and for one declared in a file of retrain.kind_modules."""

import copy
import sys

import pytest
from conftest import TINY_CONFIG
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from patchinteract import grid
from patchinteract.config import ConfigError, check_config
from patchinteract.schema import SCHEMA
from patchinteract.training import branch_kinds

# A kind declared outside the package: windows of the dip_alphas' α, with a setting of its own.
OWN_KIND = """
from patchinteract.training.branch_kinds import WindowBranch


class DipAlphaWindowBranch(WindowBranch):
    name = "awd_dip_alpha"
    pattern = "awd_dip_alpha_a{alpha}"

    @classmethod
    def points(cls, config):
        return [{"alpha": alpha} for alpha in config["dip_alphas"]]
"""


@pytest.fixture
def registry():
    """The kinds and loaded kind files as they were: a test's own kinds leave with it."""
    kinds, loaded = dict(branch_kinds.KINDS), dict(branch_kinds._LOADED)
    yield branch_kinds.KINDS
    branch_kinds.KINDS.clear()
    branch_kinds.KINDS.update(kinds)
    branch_kinds._LOADED.clear()
    branch_kinds._LOADED.update(loaded)


def validated(config: dict) -> dict:
    config = copy.deepcopy(config)
    validate(config, str(SCHEMA))
    check_config(config)
    return config


def with_own_kind(tmp_path, monkeypatch, **own_settings) -> dict:
    """The tiny config retraining every built-in kind and the file's, from ``tmp_path`` as working directory."""
    (tmp_path / "kinds.py").write_text(OWN_KIND)
    monkeypatch.chdir(tmp_path)
    config = copy.deepcopy(TINY_CONFIG)
    config["retrain"] |= {
        "methods": [*config["retrain"]["methods"], "awd_dip_alpha"],
        "kind_modules": ["kinds.py"],
        "kind_settings": {"awd_dip_alpha": own_settings} if own_settings else {},
    }
    return validated(config)


def test_the_built_in_kinds_plan_the_grid_and_import_no_torch():
    import subprocess

    code = (
        "import sys; from patchinteract import grid; from patchinteract.training import branch_kinds as b;"
        "print(list(b.KINDS), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("]")
    assert out[0] == "['vit', 'awd', 'awd_dip', 'winft'" and out[1].strip() == "False"
    config = validated(TINY_CONFIG)
    kinds = grid.branch_kinds(config)
    assert [kinds["awd_dip"].point_of(b) for b in ("awd_dip_a0.1_b0.2", "awd_a0.1", "awd_dip_a0.1")] == [
        {"alpha": "0.1", "beta": "0.2"},
        None,
        None,
    ]
    assert grid.kind_of_branch(config, "awd_a0.5") is kinds["awd"]
    with pytest.raises(ValueError, match="'awd_x' is not the name of a branch of any kind"):
        grid.kind_of_branch(config, "awd_x")
    # A job's params, from its wildcards: the values as the config spells them, its stores, its settings.
    params = grid.retraining_params(config, kinds["awd_dip"])
    wildcards = {"experiment": "tiny", "seed": "1", "alpha": "0.1", "beta": "0.2"}

    class Wildcards(dict):
        __getattr__ = dict.__getitem__

    job = Wildcards(wildcards)
    assert (params["branch"](job), params["alpha"](job), params["beta"](job)) == ("awd_dip_a0.1_b0.2", 0.1, 0.2)
    assert params["stores"](job, None)["val"] == {
        "window": "results/tiny/masks/val/window_a0.1.zarr",
        "keep": "results/tiny/masks/val/keep_b0.2.zarr",
        "fields": "results/tiny/masks/val/fields_a0.1_b0.2.zarr",
    }
    assert params["config_hash"](job) == grid.retrain_fingerprint(config, "tiny", "awd_dip_a0.1_b0.2", 1)
    assert params["settings"] == {"cls_in_window": True, "dip_mode": "multiply"} and "kind_module" not in params
    winft = grid.retraining_params(config, kinds["winft"])
    assert winft["settings"] == config["winft"] and winft["alpha"](job) == 0.1
    assert grid.retraining_outputs(kinds["winft"])["figure"] == (
        "results/{experiment}/retrain/winft/seed{seed}/figure_windows.zarr/zarr.json"
    )


def test_a_kind_declared_in_a_file_joins_the_grid_with_its_own_hash(registry, tmp_path, monkeypatch):
    config = with_own_kind(tmp_path, monkeypatch)
    assert grid.retrain_branches(config, "tiny")[-2:] == ["winft", "awd_dip_alpha_a0.1"]  # in declaration order
    own = grid.branch_kinds(config)["awd_dip_alpha"]
    assert grid.kind_module(config, own) == "kinds.py" and grid.kind_module(config, registry["awd"]) is None
    params = grid.retraining_params(config, own)
    assert params["kind_module"] == "kinds.py" and params["settings"] == {"cls_in_window": True, "dip_mode": "multiply"}
    inputs = grid.retraining_inputs(config, "tiny", own, {"alpha": 0.1})
    assert inputs["kind_module"] == "kinds.py"  # editing the file retrains its branches
    assert inputs["stores"] == [f"results/tiny/masks/{split}/window_a0.1.zarr/zarr.json" for split in ("train", "val")]
    before = {b: grid.retrain_fingerprint(config, "tiny", b, 0) for b in ("vit", "winft", "awd_dip_alpha_a0.1")}
    # Without the file, the built-in branches' hashes are those of a config that never named it.
    plain = validated(TINY_CONFIG)
    assert before["vit"] == grid.retrain_fingerprint(plain, "tiny", "vit", 0)
    assert before["winft"] == grid.retrain_fingerprint(plain, "tiny", "winft", 0)
    # Its own settings: in its params and its hash, nobody else's.
    changed = with_own_kind(tmp_path, monkeypatch, cls_in_window=False, temperature=2.0)
    assert grid.retraining_params(changed, own)["settings"] == {
        "cls_in_window": False,
        "dip_mode": "multiply",
        "temperature": 2.0,
    }
    after = {b: grid.retrain_fingerprint(changed, "tiny", b, 0) for b in before}
    assert after["vit"] == before["vit"] and after["winft"] == before["winft"]
    assert after["awd_dip_alpha_a0.1"] != before["awd_dip_alpha_a0.1"]
    # The job finds the kind from its params in a fresh process (loading the file) and trains it as AWD.
    kind = branch_kinds.branch_kind("awd_dip_alpha", "kinds.py")
    assert kind is own and kind({"cls_in_window": True, "dip_mode": "multiply"}, 0.1, 0.0).mask_arrays(
        {"window": "w"}
    ) == {"window": "w"}


@pytest.mark.parametrize(
    "kind_file, changes, message",
    [
        (None, {"kind_modules": ["missing.py"]}, r"retrain.kind_modules\[0\]: 'missing.py' is not a file"),
        ("raise RuntimeError('no GPU here')", {}, r"kind_modules\[0\]: 'kinds.py' failed to run: RuntimeError: no GPU"),
        ("x = 1", {}, r"kind_modules\[0\]: 'kinds.py' declares no kind"),
        (
            OWN_KIND,
            {"methods": ["vit", "awd_dip_alpha", "awdd"]},
            r"retrain.methods: 'awdd' is not a kind of retraining branch \(one of \['vit', 'awd', 'awd_dip', 'winft', "
            r"'awd_dip_alpha'\]\)",
        ),
        (OWN_KIND, {"kind_settings": {"awd_dip_alpa": {}}}, "retrain.kind_settings.awd_dip_alpa: no kind of branch"),
        (
            OWN_KIND.replace('pattern = "awd_dip_alpha_a{alpha}"', ""),
            {},
            r"failed to run: ValueError: branch kind 'awd_dip_alpha' has the pattern 'awd_a\{alpha\}' of 'awd'",
        ),
        (
            OWN_KIND.replace('"awd_dip_alpha"', '"awd"'),
            {"methods": ["awd"]},
            r"failed to run: ValueError: branch kind 'awd' is declared twice",
        ),
    ],
)
def test_a_bad_kind_file_or_name_is_a_config_error(registry, tmp_path, monkeypatch, kind_file, changes, message):
    monkeypatch.chdir(tmp_path)
    if kind_file is not None:
        (tmp_path / "kinds.py").write_text(kind_file)
    config = copy.deepcopy(TINY_CONFIG)
    config["retrain"] |= {"kind_modules": ["kinds.py"]} | changes
    with pytest.raises(ConfigError, match=message):
        validated(config)


def test_a_method_outside_the_kinds_is_an_error_of_the_experiment_key(registry):
    config = copy.deepcopy(TINY_CONFIG)
    config["experiments"]["tiny"]["retrain_methods"] = ["vit", "winfit"]
    with pytest.raises(ConfigError, match="experiments.tiny.retrain_methods: 'winfit' is not a kind"):
        validated(config)
    config["retrain"]["kind_settings"] = {"x": 1}  # settings of a kind are a mapping
    with pytest.raises(WorkflowError, match="kind_settings"):
        validated(config)
