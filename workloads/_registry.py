"""Workload presets: LLM configs in presets/*.json, CNNs built in code."""

from __future__ import annotations

import functools
import pathlib

from perfmodel._errors import ModelInputError
from perfmodel._spec import closest_names, load_spec_file
from perfmodel.workloads._cnn import CNN_PRESETS
from perfmodel.workloads._hf_config import from_hf_config, load_config

PRESET_DIR = pathlib.Path(__file__).parent / "presets"


def list_presets() -> list[str]:
    """Names of the bundled workload presets (LLMs and CNNs)."""
    return sorted([p.stem for p in PRESET_DIR.glob("*.json")] + list(CNN_PRESETS))


@functools.lru_cache(maxsize=None)
def preset(name: str):
    """A bundled workload by name: an `LLM` (e.g. ``"llama-2-7b"``) or a `CNN`
    (``"resnet-50"``)."""
    if name in CNN_PRESETS:
        return CNN_PRESETS[name]()
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        names = list_presets()
        hint = closest_names(name, names)
        raise ModelInputError(
            f"unknown workload {name!r}"
            + (f"; did you mean {', '.join(map(repr, hint))}?" if hint
               else f"; valid: {', '.join(names)}."))
    data = load_spec_file(path)
    extra = {"max_context": int(data["max_context"])} if "max_context" in data else {}
    return from_hf_config(data["config"], name, title=data.get("title", ""),
                          bibtex=data.get("bibtex", ""), published=data.get("published", {}),
                          **extra)


def load(path):
    """A workload from a file: a Hugging Face ``config.json`` or a preset-style JSON."""
    return load_config(path)
