"""patchinteract: patch interactions in Vision Transformers (Ma et al., TNNLS 2023).

Run the demo:      snakemake --cores 2
On a cluster:      snakemake --cores 8 --profile slurm --configfile config/<setting>.yaml
Results layout and every config key: docs/results.md, docs/configuration.md and config/schema.yaml.
"""

import sys

from snakemake.utils import min_version, update_config, validate

min_version("9.0")

# The library lives beside the Snakefile: importable here and in every job, with or without
# `pip install -e .` (e.g. inside the conda env of --software-deployment-method conda).
sys.path.insert(0, workflow.basedir)

import patchinteract  # torchvision compatibility shim before anything imports timm
from patchinteract.config import (
    canonical_params,
    canonical_params_change,
    code_indentation_change,
    command_line_values,
    relative_input_change,
    rewrite_records_once,
)

# The demo is the default config. A config given with --configfile replaces it: Snakemake
# would merge that file into a `configfile:` default, so the default loads only when none is
# given (--config key=value still applies on top of either).
if not workflow.overwrite_configfiles:

    configfile: f"{workflow.basedir}/config/config.yaml"


report: "report/workflow.rst"


# Every rule runs one script: bash execs it, so a job's signals (Slurm's SIGTERM at a time limit, on
# preemption or scancel) reach the interpreter itself, not a shell that dies at once (bash < 5.1 forks).
shell.prefix("set -euo pipefail; exec ")


# --config values mean what the same YAML means in a config file (Snakemake hands nested ones over
# as strings); then the schema checks them and fills in defaults.
update_config(config, command_line_values(workflow.config_settings.config))
validate(config, "config/schema.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/attention.smk"
include: "rules/interaction.smk"
include: "rules/masks.smk"
include: "rules/retrain.smk"
include: "rules/report.smk"
include: "rules/heads.smk"
include: "rules/semantics.smk"
include: "rules/pretraining.smk"
include: "rules/explorer.smk"


rule all:
    default_target: True
    input:
        grid.baseline_files(config),
        grid.interaction_stores(config),
        grid.field_stores(config),
        grid.branch_files(config),
        rules.tables.output,
        grid.figures(config),
        grid.head_analyses(config),
        grid.semantic_analyses(config),
        grid.pretraining_analyses(config),
        grid.explorers(config),


# A config's meaning alone decides reruns: every rule's params reach Snakemake's rerun check in
# canonical form (dicts with sorted keys), and records written before that are re-spelled so, once per
# results folder; the notebooks' paths are relative to the project, so that a moved project reruns
# nothing; a rule's code (its script line) re-indented reruns nothing either.
for rule in workflow.rules:
    canonical_params(rule.params)
if workflow.is_main_process:
    rewrite_records_once(
        ".snakemake/metadata",
        canonical_params_change,
        relative_input_change(f"{workflow.basedir}/notebooks"),
        code_indentation_change(workflow.rules),
    )
