"""Where the data sets live on disk: one data directory, resolved by a fixed precedence.

The data directory is, in order of precedence:

1. the ``data_dir`` argument (the command line's ``--data-dir``);
2. the ``SIMPLEXITY_DATA_DIR`` environment variable;
3. a per-user cache directory: ``$XDG_CACHE_HOME/simplexity`` when ``XDG_CACHE_HOME`` is set to an
   absolute path, else ``~/.cache/simplexity``.

Its layout mirrors the shared data folder (``mnist/``, ``fashion-mnist/``, ``binarized-mnist/``,
``omniglot/`` with the official file names), so ``SIMPLEXITY_DATA_DIR=../shared/data`` works as is.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "ENV_DATA_DIR",
    "MissingDataError",
    "data_dir_origin",
    "default_data_dir",
    "missing_files_message",
    "resolve_data_dir",
]

ENV_DATA_DIR = "SIMPLEXITY_DATA_DIR"
"""Name of the environment variable that sets the data directory."""


class MissingDataError(FileNotFoundError):
    """A data set's files are not in the data directory (and no download was asked for)."""


def default_data_dir() -> Path:
    """Return the per-user cache directory used when neither argument nor environment is set.

    Returns:
        ``$XDG_CACHE_HOME/simplexity`` if ``XDG_CACHE_HOME`` is an absolute path (the XDG spec says
        to ignore relative values), else ``~/.cache/simplexity``.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "simplexity"
    return Path.home() / ".cache" / "simplexity"


def _check_dir_arg(name: str, value: object) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike path, got {type(value).__name__}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text:
        raise ValueError(f"{name} must be a non-empty path, got {value!r}")
    return text


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data directory: argument > ``SIMPLEXITY_DATA_DIR`` > per-user cache.

    The directory is not created; relative paths are taken from the current working directory and
    ``~`` is expanded.

    Args:
        data_dir: an explicit directory (e.g. from ``--data-dir``), or ``None`` to fall back on the
            environment and then on :func:`default_data_dir`.

    Returns:
        The absolute path of the data directory.

    Example:
        >>> import os
        >>> resolve_data_dir("/tmp/my-data").as_posix()
        '/tmp/my-data'
    """
    if data_dir is not None:
        text = _check_dir_arg("data_dir", data_dir)
    elif os.environ.get(ENV_DATA_DIR):
        text = os.environ[ENV_DATA_DIR]
    else:
        return default_data_dir().expanduser().absolute()
    return Path(text).expanduser().absolute()


def data_dir_origin(data_dir: str | os.PathLike[str] | None = None) -> str:
    """Say where :func:`resolve_data_dir` took the directory from, for error messages."""
    if data_dir is not None:
        return "from the data_dir argument / --data-dir"
    if os.environ.get(ENV_DATA_DIR):
        return f"from ${ENV_DATA_DIR}"
    return f"the default cache dir; set ${ENV_DATA_DIR} or pass --data-dir to change it"


def missing_files_message(
    dataset: str,
    missing: list[Path],
    data_dir: str | os.PathLike[str] | None = None,
    *,
    hint: str = "",
) -> str:
    """One-line message naming the missing files, the resolved data dir and what to do.

    Args:
        dataset: the data set's registry name.
        missing: absolute paths of the files that are not there.
        data_dir: the ``data_dir`` argument as given (used to say where the directory came from).
        hint: what to do next; defaults to the ways of providing the files.
    """
    root = resolve_data_dir(data_dir)
    files = ", ".join(str(p) for p in missing)
    hint = hint or (
        f"copy them there (e.g. from ../shared/data), point ${ENV_DATA_DIR} or --data-dir at a "
        "folder that has them, or pass download=True"
    )
    return (
        f"{dataset}: {len(missing)} file(s) missing in the data dir {root} "
        f"({data_dir_origin(data_dir)}): {files}; {hint}"
    )
