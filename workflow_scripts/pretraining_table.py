"""Rule pretraining_table: per mask schedule the final k-NN and linear-probe top-1 of the MAE pre-training
runs with intervals, and the round each run first reaches 95 % of the random schedule's final k-NN top-1
(Wu et al. Fig. 9); every run's curve in one table (results/tables/)."""

from patchinteract.report.pretraining_tables import curves_table, pretraining_runs, pretraining_table
from patchinteract.report.retraining_tables import Uncertainty
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    params = snakemake.params
    runs = pretraining_runs(snakemake.input.metrics, snakemake.input.curves)
    table = pretraining_table(runs, Uncertainty.from_params(params))
    table.to_parquet(snakemake.output.table, index=False)
    curves_table(runs).to_parquet(snakemake.output.curves, index=False)
    log.info("\n%s", table.round(2).to_string(index=False))
