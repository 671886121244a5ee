"""Explicit, duplicate-checked registries (operators, denoisers, models, methods)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object table whose entries are added explicitly with :meth:`register`.

    Args:
        kind: what the entries are, used in error messages (e.g. ``"model"``).

    Raises:
        ValueError: on registering a name twice.
        KeyError: on looking up an unknown name (the message lists the known names).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that adds the decorated object under ``name``."""

        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        """Add ``obj`` under ``name``; a duplicate name is an error."""
        if name in self._entries:
            raise ValueError(f"{self.kind} registry: the name {name!r} is already registered "
                             f"(to {self._entries[name]!r})")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        """Return the entry registered under ``name``."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
