"""Each published claim evaluated at most once per test process.

`tests/test_fit.py` checks every claim and the family files check their own headlines;
without this cache a claim was evaluated up to three times per process, and test_fit did
all 53 at collection time on every xdist worker (~85 s each on 2 cores)."""

import functools

from perfmodel.fit._claims import evaluate_claim, load_claims

#: Every claim row of fit/data/claims/*.csv by id (reading the CSVs is cheap).
ROWS = {r["id"]: r for r in load_claims()}


@functools.cache
def claim_result(claim_id: str) -> dict:
    """`evaluate_claim` of the row ``claim_id`` (callers must not mutate the dict)."""
    return evaluate_claim(ROWS[claim_id])
