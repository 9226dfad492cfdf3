"""MkDocs hook: the figures the experiments write live in the repository's ``figures/`` folder, and
``docs/results.md`` links them as ``../figures/<name>`` (right on GitHub and in a checkout). The
site gets the same files under ``figures/``, and the links are pointed there while building."""

from pathlib import Path

from mkdocs.structure.files import File

FIGURES = Path(__file__).resolve().parents[2] / "figures"


def on_files(files, config):
    for png in sorted(FIGURES.glob("*.png")):
        files.append(File.generated(config, f"figures/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown, page, config, files):
    depth = page.file.src_uri.count("/")  # a page in a subfolder reaches the site's root one more level up
    return markdown.replace("](../figures/", "](" + "../" * depth + "figures/")
