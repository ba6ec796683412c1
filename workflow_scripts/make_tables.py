"""Rule tables: runs.parquet, the paper's tables with intervals, and comparisons.parquet (Parquet +
Markdown) from every metrics.json and the per-image predictions beside it."""

from pathlib import Path

from patchinteract.report.retraining_tables import Uncertainty, write_tables
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    out_dir = Path(snakemake.output.parquet[0]).parent
    params = snakemake.params
    uncertainty = Uncertainty.from_params(params)
    tables = write_tables(list(snakemake.input.metrics), out_dir, params.transfer_datasets, uncertainty)
    for name, table in tables.items():
        log.info("%s: %d rows", name, len(table))
