"""Rule head_summary: per-head summary of a split's head analyses (results/tables/)."""

import pandas as pd

from patchinteract.analyses.heads.tables import head_summary
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    inputs = snakemake.input
    summary = head_summary(
        *(pd.read_parquet(inputs[name]) for name in ("importance", "head_strength", "patterns", "clusters"))
    )
    summary.to_parquet(snakemake.output.table, index=False)
    log.info("\n%s", summary.round(4).to_string(index=False))
