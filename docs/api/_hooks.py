"""MkDocs hook: the home page is the README, its links made relative to ``docs/``.

``docs/index.md`` holds the marker line ``<!-- README -->``; this hook puts the README in its place,
so the site's home and the repository's front page are one text. The README links to the pages as
``docs/engine.md``; on the site they are ``engine.md``. Every other relative link is left as written,
so a README link to a file the site does not have fails ``mkdocs build --strict``. The README's title
gets the anchor ``home``: its own, ``simplexity``, is the API reference's name for the package.

Loaded by ``mkdocs.yml`` (``hooks:``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

MARKER = "<!-- README -->"
_DOCS_LINK = re.compile(r"\]\(docs/")
_TITLE = re.compile(r"\A# (?P<title>[^\n{]+?)[ \t]*$", flags=re.MULTILINE)


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    """Insert the README into the home page."""
    if MARKER not in markdown:
        return markdown
    readme = Path(config["config_file_path"]).parent / "README.md"
    text = _DOCS_LINK.sub("](", readme.read_text(encoding="utf-8"))
    # the title's anchor would be `simplexity`, the API reference's identifier of the package
    text = _TITLE.sub(r"# \g<title> { #home }", text, count=1)
    return markdown.replace(MARKER, text)
