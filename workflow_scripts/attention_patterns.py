"""Rule attention_patterns: t-SNE layouts of the CLS patterns and of the autoencoder codes, k-means
clusters of the codes, and each cluster's mean binarised matrix, scores and name (Li et al. Sec. 5.4)."""

import zarr

from patchinteract.analyses.heads.head_tables import pattern_tables
from patchinteract.runtime import logged_to
from patchinteract.stores.chunked import store_folder

with logged_to(snakemake.log[0]) as log:
    params = snakemake.params
    store = store_folder(snakemake.input.store)
    codes = zarr.open_group(store_folder(snakemake.input.codes), mode="r")["codes"][:]
    patterns, clusters = pattern_tables(
        store,
        codes,
        perplexity=params.perplexity,
        n_clusters=params.clusters,
        seed=params.seed,
        threads=snakemake.threads,
        iterations=params.tsne_iterations,
    )
    patterns.to_parquet(snakemake.output.patterns, index=False)
    clusters.to_parquet(snakemake.output.clusters, index=False)
    log.info("clusters:\n%s", clusters.drop(columns="mean_matrix").to_string(index=False))
