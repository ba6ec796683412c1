"""Rule theta_masking_table: masking by θ with how sure it is (Wu et al. Sec. 5.1, Fig. 8): each point's
top-1 with its interval over the images, and each θ order against the random control at the same r,
paired image by image (results/tables/)."""

import pandas as pd

from patchinteract.report.analysis_intervals import theta_masking_points, theta_masking_tests
from patchinteract.report.retraining_tables import Uncertainty
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    params = snakemake.params
    uncertainty = Uncertainty.from_params(params)
    predictions = pd.read_parquet(snakemake.input.predictions)
    points = theta_masking_points(pd.read_parquet(snakemake.input.table), predictions, uncertainty)
    points.to_parquet(snakemake.output.points, index=False)
    log.info("\n%s", points.round(2).to_string(index=False))
    tests = theta_masking_tests(predictions, uncertainty)
    tests.to_parquet(snakemake.output.tests, index=False)
    log.info("against the random control:\n%s", tests.round(4).to_string(index=False))
