"""Griffe extension for the API reference: the docstrings' reST markup rewritten as Markdown.

The docstrings are Google style with Sphinx roles (``:class:`Flow```, ``:func:`~a.b.c```), ``:math:``
roles and ``.. math::`` blocks, the vocabulary of torch and zuko. mkdocstrings renders Markdown, so
before a docstring is parsed this extension rewrites

- ``:math:`x``` as ``\\(x\\)`` and a ``.. math::`` block as ``\\[ ... \\]`` (pymdownx.arithmatex);
- a Python role (``:class:``, ``:func:``, ``:meth:``, ``:mod:``, ``:attr:``, ``:data:``, ``:exc:``,
  ``:obj:``) as a cross-reference when its target is in ``simplexity`` or ``simplexity_lab``: a name
  that exists becomes an optional reference (a link where the object is rendered, code elsewhere);
  a name that does not exist is logged as a warning, so ``mkdocs build --strict`` fails on it, in
  every docstring of both packages (rendered on a page or not).
  Relative names are resolved in the docstring's scope (members, imports, enclosing objects), a
  leading ``.`` from the enclosing package, ``~`` shows the last component only. Targets outside the
  project (torch, the standard library) stay code, and so does a bare ``:meth:``/``:attr:`` name that
  does not resolve (it may be inherited from torch); any other bare name that does not resolve fails;
- a reST simple table (columns under ``=====  =====`` rules) as a Markdown table;
- a reST literal-block marker (a paragraph ending in ``::``) as a single colon;
- an ``Example:`` section title as ``Examples:`` (Griffe's name for the section whose ``>>>`` lines are
  code; ``Example:`` would be an admonition rendered as Markdown);
- an ``Args:`` entry naming several parameters (``gamma, beta: ...``) as one entry per parameter.

Loaded by ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import html
import re
import textwrap
from typing import Any

import griffe

ROOTS = ("simplexity", "simplexity_lab")
PY_ROLES = ("class", "func", "meth", "mod", "attr", "data", "exc", "obj")
# a bare name in these roles must resolve in its scope; a method or attribute may be inherited from torch
_STRICT_ROLES = ("class", "func", "mod", "data", "exc")

_ROLE = re.compile(r":(?:py:)?(?P<role>[a-z]+):`(?P<target>[^`]+)`")
_MATH_DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<rest>.*)$")
_LITERAL_MARKER = re.compile(r"(?<=\S)::$")
_TABLE_RULE = re.compile(r"^(?P<indent>[ \t]*)=+(?:[ \t]+=+)+[ \t]*$")
_EXAMPLE_TITLE = re.compile(r"^Example:[ \t]*$", flags=re.MULTILINE)
_ARGS_TITLES = (
    "Args:",
    "Arguments:",
    "Parameters:",
    "Params:",
    "Keyword Args:",
    "Keyword Arguments:",
)
_MULTI_ARG = re.compile(
    r"^(?P<indent>[ \t]+)(?P<names>\*{0,2}\w+(?:[ \t]*,[ \t]*\*{0,2}\w+)+)(?P<rest>[ \t]*(?:\([^)]*\))?:(?:[ \t].*)?)$"
)


def _math_blocks(text: str) -> str:
    """``.. math::`` directives (inline or with an indented body) as ``\\[ ... \\]`` blocks."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _MATH_DIRECTIVE.match(lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        indent = match["indent"]
        body = [match["rest"]] if match["rest"].strip() else []
        i += 1
        block: list[str] = []
        while i < len(lines):
            line = lines[i]
            if line.strip() and len(line) - len(line.lstrip()) <= len(indent):
                break
            block.append(line)
            i += 1
        while block and not block[-1].strip():
            block.pop()
        body += [line for line in textwrap.dedent("\n".join(block)).split("\n")]
        body = [line for line in body if line.strip()]
        if out and out[-1].strip():
            out.append("")
        out += [f"{indent}\\[", *(f"{indent}    {line}" for line in body), f"{indent}\\]", ""]
        if i < len(lines) and not lines[i].strip():
            i += 1  # the blank line after the block is already there
    return "\n".join(out)


def _table_cells(row: str, starts: list[int]) -> list[str]:
    """Cut a table row at the column starts; a cell that runs past its column ends at a space."""
    cells, begin = [], 0
    for start in starts[1:]:
        cut = start if row[start - 1 : start].isspace() else row.find(" ", start) + 1 or len(row)
        cut = max(cut, begin)
        cells.append(row[begin:cut].strip())
        begin = cut
    cells.append(row[begin:].strip())
    return [cell.replace("|", "\\|") for cell in cells]


def _simple_tables(text: str) -> str:
    """reST simple tables (a rule, a header, a rule, rows, a rule) as Markdown tables."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        rule = _TABLE_RULE.match(lines[i])
        closing = [j for j in range(i + 1, len(lines)) if _TABLE_RULE.match(lines[j])][:2]
        if rule is None or len(closing) < 2 or lines[closing[0]].strip() != lines[i].strip():
            out.append(lines[i])
            i += 1
            continue
        indent = rule["indent"]
        body = lines[i].rstrip()[len(indent) :]
        starts = [m.start() for m in re.finditer(r"=+", body)]
        rows = [line[len(indent) :] for line in lines[i + 1 : closing[1]] if line.strip()]
        rows = [row for row in rows if not _TABLE_RULE.match(row)]
        head_count = closing[0] - i - 1
        table = [_table_cells(row, starts) for row in rows]
        if out and out[-1].strip():
            out.append("")
        for k, cells in enumerate(table):
            out.append(f"{indent}| {' | '.join(cells)} |")
            if k == head_count - 1:
                out.append(f"{indent}|{'---|' * len(starts)}")
        i = closing[1] + 1
    return "\n".join(out)


def _literal_markers(text: str) -> str:
    """A paragraph ending in ``::`` followed by an indented block: keep one colon."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            lines[i] = _LITERAL_MARKER.sub(":", line.rstrip())
    return "\n".join(lines)


def _split_args(text: str) -> str:
    """In an ``Args:`` section, an entry ``a, b: description`` as ``a: description`` and ``b: ...``."""
    lines = text.split("\n")
    out: list[str] = []
    in_args = False
    entry_indent = -1  # the indentation of the section's entries, set by its first entry
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith((" ", "\t")) and line.strip():
            in_args, entry_indent = line.strip() in _ARGS_TITLES, -1
        elif in_args and line.strip() and entry_indent < 0:
            entry_indent = len(line) - len(line.lstrip())
        match = _MULTI_ARG.match(line) if in_args else None
        if match is not None and len(match["indent"]) != entry_indent:
            match = None  # a continuation line, not an entry
        if match is None:
            out.append(line)
            i += 1
            continue
        indent = match["indent"]
        block = [match["rest"]]  # the description and its continuation lines, indented deeper
        i += 1
        while (
            i < len(lines)
            and lines[i].strip()
            and len(lines[i]) - len(lines[i].lstrip()) > len(indent)
        ):
            block.append(lines[i])
            i += 1
        for name in re.split(r"[ \t]*,[ \t]*", match["names"]):
            out += [f"{indent}{name}{block[0]}", *block[1:]]
    return "\n".join(out)


def _lookup(collection: griffe.ModulesCollection, path: str) -> bool:
    """Whether ``path`` names an object of the loaded packages (aliases followed)."""
    try:
        collection.get_member(path)
    except Exception:  # KeyError, alias resolution errors: the name does not exist
        return False
    return True


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """The full path of ``target`` as written in ``obj``'s docstring, or None if not a project name."""
    if target.startswith("."):
        package = obj.module if obj.module.is_init_module else obj.module.parent
        while target.startswith(".."):
            target = target[1:]
            package = package.parent if package.parent is not None else package
        return f"{package.path}{target}"
    head, _, rest = target.partition(".")
    if head in ROOTS:
        return target
    try:
        full = obj.resolve(head)
    except Exception:  # NameResolutionError: a builtin, torch, or a name inherited from torch
        return None
    return f"{full}.{rest}" if rest else full


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of a loaded package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        collection = loader.modules_collection
        for root in ROOTS:
            if root not in collection.members:
                try:
                    loader.load(root, try_relative_path=False)
                except ImportError:
                    pass
        self._visit(pkg, collection)

    def _visit(self, obj: griffe.Object, collection: griffe.ModulesCollection) -> None:
        if obj.docstring is not None:
            obj.docstring.value = self._rewrite(obj, obj.docstring.value, collection)
        for member in obj.members.values():
            if not member.is_alias:
                self._visit(member, collection)

    def _rewrite(self, obj: griffe.Object, text: str, collection: griffe.ModulesCollection) -> str:
        def broken(role: str) -> str:
            where = f"{obj.relative_filepath}:{obj.docstring.lineno if obj.docstring else 0}"
            griffe.logger.warning(f"{where}: {role} in the docstring of {obj.path} names nothing")
            return f"``{role}``"

        def role(match: re.Match[str]) -> str:
            kind, target = match["role"], match["target"]
            if kind == "math":
                return f"\\({target}\\)"
            if kind not in PY_ROLES:
                return match[0]
            short = target.startswith("~")
            target = target.lstrip("~")
            title = target.rsplit(".", 1)[-1] if short else target.lstrip(".")
            full = _resolve(obj, target)
            if full is None and kind in _STRICT_ROLES and "." not in target:
                return broken(match[0])
            if full is None or full.split(".", 1)[0] not in ROOTS:
                return f"``{title}``"
            if _lookup(collection, full):
                ident = html.escape(full, quote=True)
                return f'<autoref identifier="{ident}" optional><code>{html.escape(title)}</code></autoref>'
            return broken(match[0])

        text = _math_blocks(text)
        text = _simple_tables(text)
        text = _literal_markers(text)
        text = _EXAMPLE_TITLE.sub("Examples:", text)
        text = _split_args(text)
        return _ROLE.sub(role, text)
