"""Property-based hidden checks: hypothesis draws the inputs, the check runs on each, and on
a failure hypothesis shrinks the input to a smallest failing one, which is what the learner
is shown (a 1x1 image with value 0 says more than a 24x17 one).

Examples are drawn from a seed derived from the grading secret (`hidden_seed`), so a run is
reproducible and every secret draws other inputs. Strategies keep out the sizes for which an
operation is undefined (no empty tensors, no zero data range); checks compare with float64
references within `workbook.checks.tolerance`, so every correct float32 formulation passes.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, Phase, Verbosity, given, settings, strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis import seed as seeded
from hypothesis.errors import HypothesisException
from hypothesis.extra import numpy as hnp

from autograder.hidden import hidden_seed
from workbook.checks import CheckFailed, Checks

DTYPES = {torch.float32: np.float32, torch.float64: np.float64}

# hypothesis keeps its files (constants mined from the checks' own source among them) under
# ./.hypothesis by default: wherever the checks ran, e.g. course/, which learners receive.
# Keep them in a private temporary folder of this user instead.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / f"workbook-hypothesis-{os.getuid()}")


def for_all(c: Checks, name: str, strategy: st.SearchStrategy, check: Callable[[Checks, object], None], *,
            max_examples: int = 25) -> None:
    """Run `check(checks, example)` on examples of `strategy`; fail `c` with the failure of the
    smallest failing example hypothesis finds (its `Checks` messages, "input:" included)."""
    failure: list[str] = []

    @seeded(hidden_seed(f"properties/{c.exercise}/{name}"))
    @settings(max_examples=max_examples, database=None, deadline=None, derandomize=False, print_blob=False,
              verbosity=Verbosity.quiet, report_multiple_bugs=False, phases=(Phase.generate, Phase.shrink),
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(example):
        try:
            check(Checks(c.exercise), example)
        except CheckFailed as e:
            failure[:] = [str(e)]
            raise

    c.count += 1
    try:
        run()
    except CheckFailed:
        raise CheckFailed(failure[0] + "\n  (the smallest failing input found among random ones)") from None
    except HypothesisException as e:  # a strategy that cannot draw: the check's own problem
        raise RuntimeError(f"property check {name!r} could not draw inputs: {e}") from None


@st.composite
def tensors(draw, shape: tuple[int, ...], dtype: torch.dtype, low: float, high: float,
            levels: int = 256) -> torch.Tensor:
    """A tensor of this shape and dtype with values on `levels` evenly spaced levels of
    [low, high] (as 8-bit images are): no NaN or inf, and no differences so small that their
    squares underflow, so a float64 reference is the right answer for every dtype."""
    k = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, levels - 1), fill=st.nothing()))
    return (low + (high - low) * torch.from_numpy(k).double() / (levels - 1)).to(dtype)


@st.composite
def image_shapes(draw, max_batch: int = 3, max_channels: int = 3, max_side: int = 6) -> tuple[int, int, int, int]:
    """(B, C, H, W), each at least 1: batches of one, single pixels and several channels included."""
    return (draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)),
            draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))


dtypes = st.sampled_from([torch.float32, torch.float64])


def describe_tensor(x: torch.Tensor) -> str:
    """A tensor small enough to print, as the learner would write it."""
    name = str(x.dtype).replace("torch.", "")
    if x.numel() <= 8:
        return f"torch.tensor({x.tolist()}, dtype=torch.{name})"
    if x.dtype == torch.bool:
        return f"a {tuple(x.shape)} bool tensor with {int(x.sum())} True"
    return f"a {tuple(x.shape)} {name} tensor with values in [{x.min().item():.3g}, {x.max().item():.3g}]"
