"""Where float32 scores decide a round (`pai_bench.precision`); the fallback itself is tested
with the methods that use it (tests/methods/test_synflow.py, test_px.py)."""

from __future__ import annotations

import torch

from pai_bench.precision import decides


def test_decides_needs_a_normal_untied_threshold():
    masks = {"w": torch.tensor([True, True, True, True, False])}

    def scores(*values):
        return {"w": torch.tensor([*values, 99.0])}

    assert decides(scores(4.0, 3.0, 2.0, 1.0), masks, keep=2, lowest=False)
    assert not decides(scores(4.0, 2.0, 2.0, 1.0), masks, keep=2, lowest=False)  # tie at the threshold
    assert decides(scores(4.0, 2.0, 2.0, 1.0), masks, keep=3, lowest=False)  # the tie is kept whole
    assert decides(scores(4.0, 3.0, 0.0, 0.0), masks, keep=2, lowest=False)  # underflow below it is harmless
    assert not decides(scores(4.0, 0.0, 0.0, 0.0), masks, keep=2, lowest=False)  # threshold underflowed
    assert not decides(scores(4.0, 1e-40, 0.0, 0.0), masks, keep=2, lowest=False)  # subnormal threshold
    assert not decides(scores(float("inf"), float("inf"), 1.0, 0.5), masks, keep=1, lowest=False)
    assert not decides(scores(4.0, float("nan"), 2.0, 1.0), masks, keep=2, lowest=False)
    assert decides(scores(4.0, 3.0, 2.0, 0.0), masks, keep=2, lowest=True)  # the invert ablation keeps the lowest
    assert not decides(scores(4.0, 3.0, 0.0, 0.0), masks, keep=1, lowest=True)
    assert decides(scores(4.0, 3.0, 0.0, 0.0), masks, keep=4, lowest=True)
