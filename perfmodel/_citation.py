"""`citation(obj)`: BibTeX for the presets a result used."""

from __future__ import annotations


def citation(*objs) -> str:
    """BibTeX entries of the given hardware targets / workloads (deduplicated), plus
    perfmodel's own entry."""
    entries = []
    for obj in objs:
        bib = getattr(obj, "bibtex", "")
        if bib and bib not in entries:
            entries.append(bib)
    entries.append("@software{perfmodel, title={perfmodel: differentiable analytical "
                   "performance models for AI hardware}, year={2026}, version={0.1.0}}")
    return "\n\n".join(entries)
