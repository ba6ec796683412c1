"""The config schema, ``config/schema.yaml``: the one place that states every default. The Snakefile
validates each config against it; code that builds settings outside a config (a test, a benchmark, the
pattern autoencoder's recipe) takes the same defaults from here."""

from __future__ import annotations

import functools
from pathlib import Path

SCHEMA = Path(__file__).resolve().parent.parent / "config" / "schema.yaml"


@functools.cache
def definition_defaults(name: str) -> dict:
    """The defaults of the properties of one of the schema's definitions (e.g. ``recipe``)."""
    import yaml

    properties = yaml.safe_load(SCHEMA.read_text())["definitions"][name]["properties"]
    return {key: spec["default"] for key, spec in properties.items() if "default" in spec}
