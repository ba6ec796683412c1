"""Rule image_overview: t-SNE of every image's head-importance vector (Li et al. Sec. 5.1)."""

import pandas as pd

from patchinteract.analyses.heads.head_tables import image_overview
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    params = snakemake.params
    overview = image_overview(
        pd.read_parquet(snakemake.input.rows),
        pd.read_parquet(snakemake.input.images),
        metric=params.metric,
        perplexity=params.perplexity,
        seed=params.seed,
        threads=snakemake.threads,
        iterations=params.tsne_iterations,
    )
    overview.to_parquet(snakemake.output.overview, index=False)
    log.info("%d images laid out by their %s vectors", len(overview), params.metric)
