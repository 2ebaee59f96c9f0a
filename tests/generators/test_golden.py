"""The committed golden SDKs match a fresh generation from the current spec.

When this fails, the spec or a generator changed: look at the diff, then regenerate with
``python -m bitnet_generators.golden`` and commit the goldens with the change.
"""

from __future__ import annotations

import pytest
from bitnet_generators.golden import GOLDEN_ROOT, diff


@pytest.mark.parametrize("language", ["python", "typescript", "go"])
def test_golden_is_up_to_date(language: str) -> None:
    assert (GOLDEN_ROOT / language).is_dir(), "run: python -m bitnet_generators.golden"
    text = diff(language)
    assert not text, f"golden/{language} is stale; run python -m bitnet_generators.golden\n{text[:20000]}"
