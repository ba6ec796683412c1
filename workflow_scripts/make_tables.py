"""Rule tables: runs.parquet and the paper's tables (Parquet + Markdown) from every metrics.json."""

from pathlib import Path

from patchinteract.report.tables import write_tables
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    out_dir = Path(snakemake.output.parquet[0]).parent
    tables = write_tables(list(snakemake.input.metrics), out_dir, snakemake.params.transfer_datasets)
    for name, table in tables.items():
        log.info("%s: %d rows", name, len(table))
