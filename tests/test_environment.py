"""environment.yml (conda) and pyproject.toml (pip) name the same packages; constraints pin torch."""

import re
import tomllib

import yaml
from conftest import REPO


def normalise(requirement: str) -> str:
    name = re.split(r"[\s<>=!~\[;]", requirement.strip(), maxsplit=1)[0]
    return name.lower().replace("_", "-")


# conda-forge/pytorch spell some packages differently from PyPI.
CONDA_TO_PYPI = {"pytorch": "torch", "pytorch-cuda": None, "python": None, "pip": None}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pip_names = {normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    conda_names = set()
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):  # the pip: section (packages only on PyPI)
            conda_names |= {normalise(r) for r in entry["pip"] if not r.startswith("-e")}
        else:
            name = normalise(entry.split("::")[-1])
            mapped = CONDA_TO_PYPI.get(name, name)
            if mapped:
                conda_names.add(mapped)
    assert conda_names == pip_names, (
        f"only in environment.yml: {conda_names - pip_names}; only in pyproject: {pip_names - conda_names}"
    )


def test_constraints_pin_torch_and_torchvision():
    pins = dict(
        line.split("==")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins == {"torch": "2.13.0", "torchvision": "0.28.0"}
