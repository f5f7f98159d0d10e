"""Chapter 07 (flow matching and rectified flow): the names its notebook uses, by job.

- `checks.py`: the visible checks (`check_*`), the chapter's texts for the learner (`DIAGNOSES`,
  `QUIZ_EXPLAIN`) and the stand-ins and helpers only the checks use;
- `models.py`: the given models and helpers the narrative calls;
- `plots.py`: the figures;
- `standins.py`: a stand-in for each exercise that later cells use, built on a library
  (`ch07.standins.NAME`; see `workbook.standin`).

`from workbook import ch07` then `ch07.<name>` reaches each of them.
"""
from .checks import (DIAGNOSES, QUIZ_EXPLAIN, QUIZ_OPTIONS, check_bridge, check_flow_matching_loss,
                     check_guidance, check_path, check_quiz, check_samplers, check_straightness)
from .models import CENTRES, Recorded, sliced_wasserstein, toy_data, ToyVelocity, uniform_timesteps
from .plots import plot_curve, plot_points, plot_trajectories
from . import standins
