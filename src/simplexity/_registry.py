"""The one registry type: objects (classes, factories, records) by name, for every family in simplexity.

Normalizers, relaxations, data sets and experiments are each a :class:`Registry`. All of them list
their names the same way and raise the same error for an unknown name, naming it and the known ones.

Example:
    >>> colours = Registry("colour")
    >>> colours.add("red", 1)
    1
    >>> colours.names()
    ['red']
    >>> colours["red"]
    1
    >>> colours["blue"]
    Traceback (most recent call last):
    ...
    ValueError: unknown colour 'blue'; expected one of: red
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one family, in registration order.

    Args:
        kind: what an entry is, for error messages (``"normalizer"``, ``"relaxation"``, …).
    """

    def __init__(self, kind: str) -> None:
        if not isinstance(kind, str) or not kind:
            raise TypeError(f"kind must be a non-empty str, got {kind!r}")
        self.kind = kind
        self._entries: dict[str, T] = {}

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` as ``name`` (a new, non-empty string) and return the entry."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.kind} name must be a non-empty str, got {name!r}")
        if name in self._entries:
            raise ValueError(f"a {self.kind} named {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@registry.register("name")``."""

        def decorate(entry: T) -> T:
            return self.add(name, entry)

        return decorate

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def check(self, name: object) -> str:
        """Return ``name`` if it is registered, else raise ``ValueError`` naming it and the known ones."""
        if not isinstance(name, str):
            raise TypeError(f"a {self.kind} name must be a str, got {type(name).__name__}")
        if name not in self._entries:
            raise ValueError(
                f"unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}"
            )
        return name

    def __getitem__(self, name: str) -> T:
        return self._entries[self.check(name)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
