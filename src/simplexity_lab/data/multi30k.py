"""Multi30k task 1 (Elliott et al. 2016): German–English image-caption translation, raw text.

Files ``multi30k/{split}.{de,en}.gz`` in the data directory (one untokenized UTF-8 sentence a
line, the two languages line-aligned): ``train`` (29,000 pairs), ``val`` (1,014),
``test_2016_flickr`` (1,000), ``test_2017_flickr``, ``test_2017_mscoco``, ``test_2018_flickr``.
Nothing is downloaded.

References:
    Elliott, Frank, Sima'an and Specia, *Multi30K: Multilingual English-German Image
    Descriptions*, Workshop on Vision and Language 2016.
"""

from __future__ import annotations

import gzip
import os

from simplexity_lab.data.paths import MissingDataError, resolve_data_dir

__all__ = ["LANGUAGES", "SPLITS", "load_multi30k"]

SPLITS = (
    "train",
    "val",
    "test_2016_flickr",
    "test_2017_flickr",
    "test_2017_mscoco",
    "test_2018_flickr",
)
LANGUAGES = ("de", "en")


def load_multi30k(
    split: str,
    *,
    source: str = "de",
    target: str = "en",
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[list[str], list[str]]:
    """The ``(source sentences, target sentences)`` of ``split``, stripped, line-aligned.

    Raises:
        ValueError: unknown split or language, or files of different lengths.
        MissingDataError: the files are not in ``data_dir/multi30k``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown Multi30k split {split!r}; expected one of {', '.join(SPLITS)}")
    for name, lang in (("source", source), ("target", target)):
        if lang not in LANGUAGES:
            raise ValueError(f"{name} must be one of {LANGUAGES}, got {lang!r}")
    if source == target:
        raise ValueError(f"source and target must differ, got {source!r} twice")
    folder = resolve_data_dir(data_dir) / "multi30k"
    sides = []
    for lang in (source, target):
        path = folder / f"{split}.{lang}.gz"
        if not path.exists():
            raise MissingDataError(
                f"Multi30k file {path} is missing (put the raw .gz files under {folder})"
            )
        with gzip.open(path, "rt", encoding="utf-8") as f:
            sides.append([line.strip() for line in f])
    if len(sides[0]) != len(sides[1]):
        raise ValueError(
            f"Multi30k {split}: {len(sides[0])} {source} lines but {len(sides[1])} {target} lines"
        )
    return sides[0], sides[1]
