"""MkDocs hooks: the home page is the README; the short names of ``simplexity`` are listed from its source.

``docs/index.md`` holds the marker line ``<!-- README -->``; this hook puts the README in its place,
so the site's home and the repository's front page are one text. The README links to the pages as
``docs/engine.md``; on the site they are ``engine.md``. Every other relative link is left as written,
so a README link to a file the site does not have fails ``mkdocs build --strict``. The README's title
gets the anchor ``home``: its own, ``simplexity``, is the API reference's name for the package.

``docs/api/simplexity.md`` holds the marker line ``<!-- SHORT NAMES -->``; this hook puts there a
table of the names that ``src/simplexity/__init__.py`` imports from its subpackages and lists in
``__all__``, each linked to where it is defined (the import chain followed in the source), so the
table follows the package and a name that is not rendered fails the strict build.

Loaded by ``mkdocs.yml`` (``hooks:``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

MARKER = "<!-- README -->"
SHORT_NAMES = "<!-- SHORT NAMES -->"
_DOCS_LINK = re.compile(r"\]\(docs/")
_TITLE = re.compile(r"\A# (?P<title>[^\n{]+?)[ \t]*$", flags=re.MULTILINE)


def _module_file(src: Path, module: str) -> Path:
    path = src.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports(src: Path, module: str) -> tuple[dict[str, str], list[str]]:
    """``{name: the module it is imported from}`` and ``__all__`` of ``module``, read from its source."""
    tree = ast.parse(_module_file(src, module).read_text(encoding="utf-8"))
    imported: dict[str, str] = {}
    exported: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                imported[alias.asname or alias.name] = node.module
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            exported = list(ast.literal_eval(node.value))
    return imported, exported


def _defined_in(src: Path, module: str, name: str) -> str:
    """The path of ``name`` in the module that defines it, following ``from ... import`` chains."""
    for _ in range(10):
        imported, _ = _imports(src, module)
        if name not in imported:
            return f"{module}.{name}"
        module = imported[name]
    raise RuntimeError(f"import chain of {name} too long")


def _short_names(src: Path) -> str:
    imported, exported = _imports(src, "simplexity")
    rows = ["| short name | defined in |", "|---|---|"]
    for name in sorted(n for n in exported if n in imported and imported[n] != "simplexity"):
        public = f"{imported[name]}.{name}"
        rows.append(
            f"| `simplexity.{name}` | [`{public}`][{_defined_in(src, imported[name], name)}] |"
        )
    return "\n".join(rows)


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    """Insert the README into the home page and the short names into the package's page."""
    root = Path(config["config_file_path"]).parent
    if SHORT_NAMES in markdown:
        markdown = markdown.replace(SHORT_NAMES, _short_names(root / "src"))
    if MARKER not in markdown:
        return markdown
    readme = root / "README.md"
    text = _DOCS_LINK.sub("](", readme.read_text(encoding="utf-8"))
    # the title's anchor would be `simplexity`, the API reference's identifier of the package
    text = _TITLE.sub(r"# \g<title> { #home }", text, count=1)
    return markdown.replace(MARKER, text)
