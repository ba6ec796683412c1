"""The results layout and the branch grid: every path under results/ and every branch name, in one place."""

from __future__ import annotations


def value_label(value: float) -> str:
    """How an α or β appears in file names: 0.1 -> '0.1', 1.0 -> '1'."""
    return f"{value:g}"


def retrain_methods(config: dict, experiment: str) -> list[str]:
    """Retraining methods of an experiment (retrain_methods overrides retrain.methods)."""
    return config["experiments"][experiment].get("retrain_methods", config["retrain"]["methods"])


def retrain_branches(config: dict, experiment: str) -> list[str]:
    """Branch names of an experiment's grid: vit, awd_a<α>, awd_dip_a<α>_b<β>, winft."""
    methods = retrain_methods(config, experiment)
    branches = ["vit"] if "vit" in methods else []
    if "awd" in methods:
        branches += [f"awd_a{value_label(a)}" for a in config["alphas"]]
    if "awd_dip" in methods:
        branches += [
            f"awd_dip_a{value_label(a)}_b{value_label(b)}" for a in config["dip_alphas"] for b in config["betas"]
        ]
    if "winft" in methods:
        branches.append("winft")
    return branches
