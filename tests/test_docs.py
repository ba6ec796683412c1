"""The README and docs/: every relative link resolves inside the repository (to a file, and to a heading of
it where the link names one), and the README stays a newcomer's page."""

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
README_MOST_LINES = 250


def prose(page: Path) -> str:
    """A Markdown page without its fenced code blocks (where brackets are code, not links)."""
    return re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)


def heading_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", prose(page), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_heading_anchors_follow_githubs_rule():
    assert heading_anchors(REPO / "docs/cluster.md") >= {
        "proving-the-gpu-path-make-gpu-check",
        "several-gpus-for-one-job",
        "on-a-slurm-cluster",
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_resolves_inside_the_repository(page):
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: outside links are allowed
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.is_relative_to(REPO) or not resolved.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved):
            broken.append(f"{target}: no heading '{anchor}' in {resolved.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_the_readme_is_a_page_a_newcomer_reads_in_minutes():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MOST_LINES
    for section in ("## The two commands", "## Running it yourself", "### Your own images", "## On a GPU cluster"):
        assert section in readme, section
    assert "make demo" in readme and "make test" in readme and "![" in readme  # the commands and a picture


def test_the_readmes_own_images_config_is_complete(tmp_path):
    """The config the README shows for one's own image folder passes the schema and the checks as it is
    written (the folder pointed at one that exists)."""
    from snakemake.utils import validate

    from patchinteract.config import check_config

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Your own images") :]
    text = re.search(r"```yaml\n(.*?)```", section, flags=re.S).group(1)
    config = yaml.safe_load(text.replace("/data/flowers", str(tmp_path)))
    for split in ("train", "val"):
        (tmp_path / split / "rose").mkdir(parents=True)
    validate(config, str(REPO / "config/schema.yaml"))
    check_config(config)
    assert config["experiments"]["flowers_b16"]["dataset"] == "flowers"
