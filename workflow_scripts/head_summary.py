"""Rule head_summary: per-head summary of a split's head analyses, with the interval of each importance
mean and of each head's rank over the images (results/tables/)."""

import pandas as pd

from patchinteract.analyses.heads.head_tables import head_summary
from patchinteract.report.analysis_intervals import head_importance_intervals, surely_top_heads
from patchinteract.report.retraining_tables import Uncertainty
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    inputs, params = snakemake.input, snakemake.params
    importance = pd.read_parquet(inputs.importance)
    summary = head_summary(
        importance, *(pd.read_parquet(inputs[name]) for name in ("head_strength", "patterns", "clusters"))
    )
    uncertainty = Uncertainty.from_params(params)
    summary = summary.merge(head_importance_intervals(importance, uncertainty, params.top_k), on=["layer", "head"])
    summary.to_parquet(snakemake.output.table, index=False)
    log.info("\n%s", summary.round(4).to_string(index=False))
    for metric, heads in surely_top_heads(summary).items():
        log.info("%s: among the %d most important for sure: %s", metric, params.top_k, ", ".join(heads) or "none")
