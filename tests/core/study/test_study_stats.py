"""Mean, sample std and paired differences against hand computations."""

import math

import pytest
from compat_core.study.stats import paired, pm, summarize


def test_summarize_matches_a_hand_computation():
    values = [0.80, 0.84, 0.77, 0.81]
    mean = (0.80 + 0.84 + 0.77 + 0.81) / 4  # 0.805
    std = math.sqrt(((0.80 - mean) ** 2 + (0.84 - mean) ** 2 + (0.77 - mean) ** 2 + (0.81 - mean) ** 2) / 3)
    result = summarize(values)
    assert result["mean"] == pytest.approx(0.805)
    assert result["std"] == pytest.approx(std)
    assert (result["min"], result["max"], result["values"]) == (0.77, 0.84, values)


def test_one_value_has_no_spread_and_none_has_no_summary():
    assert summarize([0.5])["std"] == 0.0
    assert summarize([]) == {"mean": None, "std": None, "min": None, "max": None, "values": []}
    assert pm(summarize([])) == "-"


def test_paired_counts_each_side_and_ties():
    result = paired([0.9, 0.5, 0.7, 0.6], [0.8, 0.6, 0.7, 0.5])
    assert (result["favour_method"], result["favour_comparison"], result["ties"]) == (2, 1, 1)
    assert result["diff"]["values"] == pytest.approx([0.1, -0.1, 0.0, 0.1])
    assert result["diff"]["mean"] == pytest.approx(0.025)


def test_paired_needs_the_same_pairs():
    with pytest.raises(ValueError):
        paired([0.1, 0.2], [0.1])
