"""patchinteract: patch interactions in Vision Transformers (Ma et al., TNNLS 2023).

Run the demo:      snakemake --cores 2
On a cluster:      snakemake --cores 8 --profile slurm --configfile config/<setting>.yaml
Results layout and every config key: README.md and config/schema.yaml.
"""

from snakemake.utils import min_version, validate

min_version("9.0")


# The demo is the default config. A config given with --configfile replaces it: Snakemake
# would merge that file into a `configfile:` default, so the default loads only when none is
# given (--config key=value still applies on top of either).
if not workflow.overwrite_configfiles:

    configfile: f"{workflow.basedir}/config/config.yaml"


report: "report/workflow.rst"


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
include: "rules/explorer.smk"


rule all:
    default_target: True
    input:
        baseline_metrics(),
        interaction_stores(),
        field_stores(),
        retrain_metrics(),
        rules.tables.output,
        figures(),
        head_analyses(),
        semantic_analyses(),
        explorers(),
