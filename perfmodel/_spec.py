"""Spec files: TOML (hardware) and JSON (workloads) with a ``schema_version``.

`SpecReader` reads values by name with their unit suffix, converts them to SI once, and
at the end refuses keys nobody read, so a typo is an error rather than a silent default.
Format: docs/spec_format.md.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys

from perfmodel._errors import ModelInputError
from perfmodel._units import UNIT_SUFFIXES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Spec schema versions this release reads.
SCHEMA_VERSION = 1


def load_spec_file(path) -> dict:
    """Parse a TOML or JSON spec file; errors name the file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ModelInputError(f"spec file {str(path)!r} does not exist.")
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            data = tomllib.loads(path.read_text())
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ModelInputError(f"spec file {str(path)!r} is malformed: {e}.") from None
    if not isinstance(data, dict):
        raise ModelInputError(f"spec file {str(path)!r} must hold a table/object at top level.")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ModelInputError(
            f"{path.name}: schema_version = {version!r} is not supported; "
            f"it must be {SCHEMA_VERSION}.")
    return data


class SpecReader:
    """Reads a nested spec dict; remembers which keys were consumed."""

    def __init__(self, data: dict, label: str):
        self.data = data
        self.label = label
        self.used: set[tuple[str, ...]] = set()

    def section(self, *path: str, required: bool = True) -> dict | None:
        d = self.data
        for p in path:
            if not isinstance(d, dict) or p not in d:
                if required:
                    raise ModelInputError(f"{self.label}: missing section [{'.'.join(path)}].")
                return None
            d = d[p]
        return d

    def raw(self, *path: str, default=None, required: bool = False):
        sec = self.section(*path[:-1], required=required)
        if sec is None or path[-1] not in sec:
            if required:
                raise ModelInputError(f"{self.label}: missing field {'.'.join(path)}.")
            return default
        self.used.add(path)
        return sec[path[-1]]

    def number(self, *path: str, unit: str = "", default=None, positive: bool = True,
               lo: float | None = None, hi: float | None = None) -> float:
        """A numeric field ``path[-1] + unit`` converted to SI (a missing field takes
        ``default``, or is an error when ``default`` is None)."""
        key = path[-1] + unit
        full = path[:-1] + (key,)
        value = self.raw(*full, default=None)
        dotted = ".".join(full)
        if value is None:
            if default is None:
                raise ModelInputError(f"{self.label}: missing field {dotted}.")
            return float(default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelInputError(f"{self.label}: {dotted} = {value!r} must be a number.")
        value = float(value)
        if not math.isfinite(value) or (positive and value <= 0):
            raise ModelInputError(
                f"{self.label}: {dotted} = {value!r} is invalid; it must be finite and > 0.")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ModelInputError(
                f"{self.label}: {dotted} = {value!r} is out of range; it must be in "
                f"[{lo}, {hi}].")
        return value * (UNIT_SUFFIXES[unit] if unit else 1.0)

    def identity(self) -> dict:
        """A preset's ``name`` (required), ``title`` and ``bibtex``, as keyword arguments
        for a target's constructor."""
        return dict(name=str(self.raw("name", required=True)),
                    title=str(self.raw("title", default="")),
                    bibtex=str(self.raw("bibtex", default="")))

    def finish_target(self) -> None:
        """`finish` for a hardware spec: ``family`` and ``schema_version`` were read by the
        loader; every other key must have been consumed."""
        self.raw("family")
        self.raw("schema_version")
        self.finish()

    def finish(self, ignore: tuple[str, ...] = ("sources", "notes")) -> None:
        """Raise on any key that was not read (except documentation sections)."""
        unknown = []

        def walk(d, prefix):
            for k, v in d.items():
                p = prefix + (k,)
                if p[0] in ignore or p in self.used:
                    continue
                if isinstance(v, dict):
                    walk(v, p)
                else:
                    unknown.append(".".join(p))

        walk(self.data, ())
        if unknown:
            raise ModelInputError(
                f"{self.label}: unknown field {unknown[0]!r}"
                + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
                + "; see docs/spec_format.md for the valid fields.")


def closest_names(name: str, candidates, n: int = 3) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.4)
