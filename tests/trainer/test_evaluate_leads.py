"""``ecg-train evaluate --leads``: the trainer undoes a lead reversal as the agent does."""

from __future__ import annotations

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.records import read_record
from edge.reversal import restore_record, reverse_la_ra
from trainer.data import scan
from trainer.evaluate import evaluate_items


@pytest.fixture(scope="module")
def items(samples_dir):
    return [it for it in scan([samples_dir]).items if it.name.startswith(("HR", "A0", "E0"))]


def test_restore_record_undoes_a_swap_it_finds(samples_dir):
    rec = read_record(samples_dir / "ptb-xl" / "HR00001")
    same, c = restore_record(rec.signal, rec.fs)
    assert same is rec.signal and c is not None and not c.reversed and not c.inverted
    back, c = restore_record(reverse_la_ra(rec.signal), rec.fs)
    assert c.reversed and "reversed" in c.reason
    np.testing.assert_array_equal(back, rec.signal)  # the swap is an involution
    y = rec.signal.copy()
    y[9] = -y[9]  # V4 inverted
    back, c = restore_record(y, rec.fs)
    assert c.inverted == ("V4",)
    np.testing.assert_array_equal(back, rec.signal)


def test_reversed_then_restored_scores_as_recorded(tiny_bundle, items):
    assert len(items) >= 4
    b = load_bundle(tiny_bundle)
    ev = {m: evaluate_items(b, items, ["fp32"], leads=m)["fp32"] for m in (
        "as-recorded", "reversed", "reversed-restored")}  # fmt: skip
    found = [
        i for i, it in enumerate(items)
        if restore_record(reverse_la_ra(read_record(it.header).signal),
                          read_record(it.header).fs)[1].reversed
    ]  # fmt: skip
    assert len(found) >= len(items) // 2
    base, rev, fixed = (ev[m].scores for m in ("as-recorded", "reversed", "reversed-restored"))
    np.testing.assert_allclose(fixed[found], base[found], atol=1e-5)
    assert np.abs(rev[found] - base[found]).max() > 1e-3  # the swap did change the scores
    with pytest.raises(Exception, match="leads"):
        evaluate_items(b, items, ["fp32"], leads="sideways")
