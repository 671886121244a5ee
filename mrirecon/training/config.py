"""Recipes: YAML files that override config dataclasses, plus ``key=value`` command-line overrides.

A recipe is a dataclass (one per training task, e.g. :class:`mrirecon.training.denoiser.DenoiserRecipe`)
whose fields are sections (``model``, ``data``, ``optim``, ``trainer``, ...), each a dataclass with its
defaults. A YAML recipe lists only what differs from the defaults; ``key=value`` overrides
(``trainer.max_steps=10 model.width=16``) come last. Unknown keys and ill-typed values are errors that
name the key path; the resolved recipe (every value, defaults included) is printed and saved as
``config.yaml`` next to the checkpoints, and ``mrirecon train RUN/config.yaml`` reruns it.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mrirecon.atomic import atomic_write_text
from mrirecon.denoisers._config import RawValue, dataclass_from_dict, to_plain
from mrirecon.errors import ConfigError, DataError

__all__ = ["RawValue", "apply_overrides", "dataclass_from_dict", "dump_yaml", "find_recipe", "load_yaml",
           "parse_overrides", "save_yaml", "to_plain"]

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"


def find_recipe(name: str | Path) -> Path:
    """A recipe file: a path, or a name in ``recipes/`` (``denoiser_dncnn`` -> ``recipes/denoiser_dncnn.yaml``).

    Raises:
        ConfigError: no such file (lists the recipes found).
    """
    p = Path(name).expanduser()
    if p.is_file():
        return p
    for folder in (Path.cwd() / "recipes", RECIPES_DIR):
        for cand in (folder / p.name, folder / f"{p.name}.yaml"):
            if cand.is_file():
                return cand
    known = sorted(x.stem for d in {Path.cwd() / "recipes", RECIPES_DIR} if d.is_dir() for x in d.glob("*.yaml"))
    raise ConfigError(f"recipe {str(name)!r} not found (not a file; recipes: {', '.join(known) or 'none'})")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping.

    Raises:
        DataError: unreadable or not YAML.  ConfigError: the document is not a mapping.
    """
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise DataError(f"recipe {p}: cannot be read ({exc})") from None
    except yaml.YAMLError as exc:
        raise DataError(f"recipe {p}: not valid YAML ({exc})") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"recipe {p}: expected a mapping of sections at the top level, got {type(doc).__name__}")
    return doc


def parse_overrides(items: Sequence[str]) -> list[tuple[list[str], RawValue]]:
    """``["a.b=1", ...]`` -> ``[(["a", "b"], RawValue("1")), ...]`` (values are typed later, by the field).

    Raises:
        ConfigError: an item without ``=`` or with an empty key.
    """
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not key.strip() or any(not p for p in parts):
            raise ConfigError(f"override {item!r}: expected key=value with a dotted key (e.g. trainer.max_steps=100)")
        out.append((parts, RawValue(value.strip())))
    return out


def apply_overrides(doc: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``doc`` with the ``key=value`` overrides set (nested mappings created as needed).

    Keys are checked later, against the recipe dataclass, like the YAML's own keys.

    Raises:
        ConfigError: malformed override, or a key below a value that is not a mapping.
    """
    out = copy.deepcopy(doc)
    for parts, value in parse_overrides(overrides):
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {'.'.join(parts)}={value}: {'.'.join(parts[:i + 1])} is a value "
                                  f"({nxt!r}), not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def dump_yaml(doc: Any) -> str:
    """YAML text of a plain structure (dataclasses converted), keys in definition order."""
    return yaml.safe_dump(to_plain(doc), sort_keys=False, default_flow_style=None)


def save_yaml(doc: Any, path: str | Path) -> Path:
    """Write :func:`dump_yaml` of ``doc`` to ``path`` atomically (temp file + ``os.replace``)."""
    p = Path(path)
    atomic_write_text(p, dump_yaml(doc))
    return p


def build_recipe(cls: type, doc: dict[str, Any], where: str) -> Any:
    """The recipe dataclass ``cls`` from a (YAML + overrides) mapping; unknown keys/bad types are ConfigErrors."""
    return dataclass_from_dict(cls, doc, where)
