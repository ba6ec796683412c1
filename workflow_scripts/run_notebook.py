"""Figure rules: execute a parameterised notebook with papermill, keeping the executed copy as a record."""

import os
from pathlib import PurePath

import papermill

from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    # Notebook parameters are stored as JSON: paths (store folders) as strings.
    given = snakemake.params.paths | snakemake.params.get("settings", {})
    parameters = {k: str(v) if isinstance(v, PurePath) else v for k, v in given.items()}
    log.info("executing %s with %s", snakemake.input.notebook, parameters)
    papermill.execute_notebook(
        snakemake.input.notebook,
        snakemake.output.notebook,
        parameters=parameters,
        kernel_name="python3",
        cwd=os.getcwd(),
        progress_bar=False,
        log_output=True,
    )
