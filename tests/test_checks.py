"""The check library itself: values of any kind are judged, never crash the check, and the
tolerance policy accepts float32 rounding while rejecting real errors."""
import math

import pytest
import torch

from workbook.checks import CheckFailed, Checks, tolerance


@pytest.mark.parametrize("got", [None, "0.5", object(), {"a": 1}, [[1, 2], [3]]])
def test_close_reports_what_came_back_instead_of_crashing(got):
    with pytest.raises(CheckFailed, match="should be a tensor or a number"):
        Checks("x").close("value", got, torch.tensor(0.5))


def test_close_takes_numbers_and_compares_them():
    Checks("x").close("value", 0.5, torch.tensor(0.5))
    with pytest.raises(CheckFailed, match="wrong values"):
        Checks("x").close("value", 0.75, torch.tensor(0.5))


def test_nan_never_matches_and_equal_infinities_do():
    with pytest.raises(CheckFailed, match="wrong values"):
        Checks("x").close("v", torch.tensor([1.0, math.nan]), torch.tensor([1.0, 1.0]))
    Checks("x").close("v", torch.tensor([math.inf, 1.0]), torch.tensor([math.inf, 1.0]))
    with pytest.raises(CheckFailed):
        Checks("x").close("v", torch.tensor([-math.inf]), torch.tensor([math.inf]))


def test_empty_and_mismatched_shapes_are_messages():
    with pytest.raises(CheckFailed, match="shape"):
        Checks("x").close("v", torch.zeros(0), torch.zeros(3))


def test_tolerance_accepts_float32_rounding_at_large_arguments():
    """sin(t f) at t ~ 1000: float32 rounding of the argument alone costs ~1e-4."""
    t = torch.tensor([999.0, 517.0, 3.0], dtype=torch.float64)
    f = torch.exp(-math.log(10000) * torch.arange(8, dtype=torch.float64) / 8)
    want = torch.sin(t[:, None] * f)
    got32 = torch.sin(t.float()[:, None] * f.float())
    Checks("x").close("emb", got32, want, **tolerance(torch.float32, scale=1000))
    with pytest.raises(CheckFailed):   # a real mistake (cos for sin) still fails
        Checks("x").close("emb", torch.cos(t.float()[:, None] * f.float()), want,
                          **tolerance(torch.float32, scale=1000))


def test_tolerance_is_exact_for_integers_and_tight_for_float64():
    assert tolerance(torch.int64) == {"atol": 0.0, "rtol": 0.0}
    assert tolerance(torch.float64)["rtol"] < 1e-13 < tolerance(torch.float32)["rtol"]
