"""Rule semantics_summary: θ_KK, θ_NK, θ_KN, θ_NN and the focus index per layer and head, averaged over
the images of a split (Wu et al. Fig. 5-6), with how many images each mean is over; per layer θ_KK − θ_NK
paired image by image with its interval; and the three stages of the forward pass read off the per-layer
curves (Sec. 4.3, Fig. 7) (results/tables/)."""

import pandas as pd

from patchinteract.analyses.semantics.semantics_store import semantics_summary
from patchinteract.analyses.semantics.stages import stage_table
from patchinteract.report.analysis_intervals import theta_layer_differences
from patchinteract.report.retraining_tables import Uncertainty
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    params = snakemake.params
    theta = pd.read_parquet(snakemake.input.theta)
    summary = semantics_summary(theta)
    summary.to_parquet(snakemake.output.table, index=False)
    log.info("\n%s", summary.round(4).to_string(index=False))
    layers = theta_layer_differences(theta, Uncertainty.from_params(params))
    layers.to_parquet(snakemake.output.layers, index=False)
    log.info("θ_KK − θ_NK per layer, paired by image:\n%s", layers.round(4).to_string(index=False))
    stages = stage_table(summary)
    stages.to_parquet(snakemake.output.stages, index=False)
    log.info("stages:\n%s", stages.round(3).to_string(index=False) if len(stages) else "none (fewer than 3 layers)")
