"""Spec files: TOML (hardware) and JSON (workloads) with a ``schema_version``.

`SpecReader` reads values by name with their unit suffix, converts them to SI once, and
at the end refuses keys nobody read, so a typo is an error rather than a silent default.
Format: docs/spec_format.md.
"""

from __future__ import annotations

import contextlib
import json
import math
import pathlib
import sys
import warnings

from perfmodel._errors import ModelInputError, PlausibilityWarning
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
        #: (section path, field stem) -> unit suffixes `number` accepted for it
        self._stems: dict[tuple, tuple[str, ...]] = {}

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
        ``default``, or is an error when ``default`` is None).

        The key may carry any unit suffix of the same dimension as ``unit``
        (``bandwidth_TB_s`` for ``bandwidth_GB_s``; `UNIT_DIMENSIONS`); a suffix of
        another dimension is an error that lists the valid ones. ``lo``/``hi`` bound the
        value as written; a value outside the family's plausible range
        (`perfmodel.hardware._plausible`) is loaded with a `PlausibilityWarning`."""
        stem, sec_path = path[-1], path[:-1]
        suffixes = _same_dimension(unit)
        self._stems[(sec_path, stem)] = suffixes
        sec = self.section(*sec_path, required=False)
        sec = sec if isinstance(sec, dict) else {}
        present = [s for s in suffixes if stem + s in sec]
        if len(present) > 1:
            keys = " and ".join(".".join(sec_path + (stem + s,)) for s in present)
            raise ModelInputError(f"{self.label}: {keys} give the same field twice; keep one.")
        if not present:
            if default is None:
                stray = self._stray_unit_key(sec_path, stem, sec)
                if stray:
                    raise ModelInputError(stray)
                raise ModelInputError(
                    f"{self.label}: missing field {'.'.join(sec_path + (stem + unit,))}.")
            return float(default)
        suffix = present[0]
        full = sec_path + (stem + suffix,)
        value = self.raw(*full)
        dotted = ".".join(full)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelInputError(f"{self.label}: {dotted} = {value!r} is invalid; it must be "
                                  "a number.")
        factor = UNIT_SUFFIXES[suffix] if suffix else 1.0
        base = UNIT_SUFFIXES[unit] if unit else 1.0
        v = float(value) * factor / base      # in the units of ``unit``, as lo/hi are
        if (not math.isfinite(v) or (positive and v <= 0) or (lo is not None and v < lo)
                or (hi is not None and v > hi)):
            raise ModelInputError(
                f"{self.label}: {dotted} = {value!r} is invalid; it must be "
                f"{_range_text(lo, hi, positive, base / factor)}.")
        self._check_plausible(sec_path + (stem + unit,), v, dotted, value, base / factor)
        return v * base

    def _stray_unit_key(self, sec_path, stem: str, sec: dict, loose=False) -> str | None:
        """The error for a key ``stem_<suffix>`` whose suffix is not one of ``stem``'s
        units (``bandwidth_Gbps``, ``bandwidth_TBps``), or None. ``loose``: any tail
        counts when ``stem`` has units (the key is known to be unread)."""
        valid = self._stems.get((sec_path, stem), ())
        for k in sec:
            rest = k[len(stem):]
            if k.startswith(stem + "_") and rest not in valid and (
                    _looks_like_unit(rest) or (loose and valid != ("",))):
                dotted = ".".join(sec_path + (k,))
                ok = ", ".join(valid) if valid != ("",) else "none (write the bare name)"
                return (f"{self.label}: unknown key {dotted}; valid unit suffixes for "
                        f"{'.'.join(sec_path + (stem,))}: {ok}.")
        return None

    def _check_plausible(self, key_path, v, dotted, value, to_written) -> None:
        family = self.data.get("family")
        if not isinstance(family, str):
            return
        from perfmodel.hardware._plausible import PLAUSIBLE_RANGES

        entry = PLAUSIBLE_RANGES.get(family, {}).get(".".join(key_path))
        if entry is None:
            return
        lo, hi = entry[0], entry[1]
        if lo <= v <= hi:
            return
        shown = entry[2] if len(entry) > 2 else _readable_unit(key_path[-1])
        if to_written != 1.0:   # written in another unit of the same dimension
            lo, hi = lo * to_written, hi * to_written
            shown = _readable_unit(dotted)
        warnings.warn(PlausibilityWarning(
            f"{self.label}: {dotted} = {value!r} is outside the plausible range for "
            f"family {family}, {lo:g} to {hi:g}{' ' + shown if shown else ''}; check the value "
            "and its unit."), stacklevel=3)

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
            first = unknown[0]
            sec_path, key = tuple(first.split(".")[:-1]), first.split(".")[-1]
            sec = self.section(*sec_path, required=False) or {}
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            for (sp, stem), _ in sorted(self._stems.items(), key=lambda t: -len(t[0][1])):
                if sp == sec_path and key.startswith(stem + "_"):
                    stray = self._stray_unit_key(sp, stem, {key: None}, loose=True)
                    if stray:
                        raise ModelInputError(stray[:-1] + more + ".")
            known = {p[-1] for p in self.used if p[:-1] == sec_path} | set(sec)
            hint = closest_names(key, sorted(known - {key}), n=1)
            raise ModelInputError(
                f"{self.label}: unknown field {first!r}" + more
                + (f"; did you mean {'.'.join(sec_path + (hint[0],))!r}?" if hint else
                   "; see docs/spec_format.md for the valid fields."))


@contextlib.contextmanager
def one_line_warnings(prog: str = "perfmodel", stream=None):
    """Inside, each `PlausibilityWarning` prints as one line, ``perfmodel: warning:
    <message>``, on ``stream`` (stderr by default) instead of Python's two-line
    ``file:line: Category: message`` trace; other warnings print as usual. The CLI runs
    every command inside it."""
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, PlausibilityWarning):
                (stream or sys.stderr).write(f"{prog}: warning: {message}\n")
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def closest_names(name: str, candidates, n: int = 3) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.4)


#: Unit suffixes (`perfmodel._units.UNIT_SUFFIXES`) grouped by dimension: a spec key may
#: use any suffix of its field's dimension (``bandwidth_TB_s`` for ``bandwidth_GB_s``).
UNIT_DIMENSIONS = {
    "bandwidth": ("_GB_s", "_TB_s"),
    "bytes": ("_GB", "_MB", "_KB", "_B", "_GiB", "_MiB"),
    "energy per bit": ("_pJ_per_bit", "_fJ_per_bit"),
    "energy per MAC": ("_pJ_per_mac", "_fJ_per_mac"),
    "energy per FLOP": ("_pJ_per_flop",),
    "energy": ("_pJ", "_fJ", "_nJ"),
    "time": ("_us", "_ns", "_ms", "_s"),
    "power": ("_W", "_mW", "_uW"),
    "frequency": ("_GHz", "_MHz", "_kHz"),
    "bit rate": ("_Gbps",),
    "operation rate": ("_TFLOPS", "_TOPS", "_GOPS"),
    "power density": ("_mW_per_mm2", "_W_per_cm2"),
    "area": ("_mm2", "_um2"),
    "length": ("_mm", "_um", "_nm"),
    "decibel": ("_dB",),
    "decibel-milliwatt": ("_dBm",),
    "price": ("_usd",),
    "price per area": ("_usd_per_mm2",),
}
_DIMENSION_OF = {s: dim for dim, group in UNIT_DIMENSIONS.items() for s in group}


def _same_dimension(unit: str) -> tuple[str, ...]:
    """``unit`` first, then the other suffixes of its dimension (``("",)`` if none)."""
    if not unit:
        return ("",)
    return (unit,) + tuple(s for s in UNIT_DIMENSIONS[_DIMENSION_OF[unit]] if s != unit)


def _looks_like_unit(rest: str) -> bool:
    """Whether a key's tail after a field name reads as a unit suffix (a known one, or
    a near miss such as ``_TBps``), not as another field (``_latency_us``)."""
    import difflib

    if rest in UNIT_SUFFIXES:
        return True
    folded = {s.lower().replace("_", ""): s for s in UNIT_SUFFIXES}
    return bool(difflib.get_close_matches(rest.lower().replace("_", ""), list(folded),
                                          n=1, cutoff=0.75))


def _readable_unit(key: str) -> str:
    """``bandwidth_GB_s`` -> ``GB/s``, ``energy_pJ_per_bit`` -> ``pJ/bit``; '' if none."""
    suffix = max((s for s in UNIT_SUFFIXES if key.endswith(s)), key=len, default="")
    text = suffix[1:].replace("_per_", "/")
    if text.endswith("_s"):
        text = text[:-2] + "/s"
    return text.replace("mm2", "mm^2").replace("um2", "um^2").replace("cm2", "cm^2")


def _range_text(lo, hi, positive: bool, scale: float = 1.0) -> str:
    """The valid range of `SpecReader.number` in words (bounds scaled to the units the
    key was written in)."""
    f = lambda x: f"{x * scale:g}"  # noqa: E731
    if lo is None and hi is None:
        return "finite and > 0" if positive else "finite"
    if hi is None:
        return f"a finite number >= {f(lo)}"
    if lo is None and positive:
        if hi * scale <= 1.0:
            return f"a fraction in (0, {f(hi)}]"
        return f"in (0, {f(hi)}]"
    if lo is None:
        return f"<= {f(hi)}"
    return f"in [{f(lo)}, {f(hi)}]"
