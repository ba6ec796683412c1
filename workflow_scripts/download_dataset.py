"""Rule download_dataset (local): fetch an archive, verify its sha256, extract it atomically."""

from pathlib import Path

from patchinteract.data.sources import download, extract_archive
from patchinteract.runtime import logged_to

with logged_to(snakemake.log[0]) as log:
    settings = snakemake.params.dataset
    images = Path(snakemake.output.images)
    archive = images.parent / Path(settings["url"]).name
    if archive.is_file() and snakemake.params.keep_archives:
        log.info("reusing %s", archive)
    else:
        log.info("downloading %s", settings["url"])
        download(settings["url"], archive, settings["sha256"])
    extract_archive(archive, images)
    if not snakemake.params.keep_archives:
        archive.unlink()
    log.info("extracted into %s", images)
