"""Chapter 04 (CLIP): the names its notebook uses, by job.

- `checks.py`: the visible checks (`check_*`), the chapter's texts for the learner (`DIAGNOSES`,
  `QUIZ_EXPLAIN`) and the stand-ins and helpers only the checks use;
- `models.py`: the given models and helpers the narrative calls;
- `plots.py`: the figures;
- `standins.py`: a stand-in for each exercise that later cells use, built on a library
  (`ch04.standins.NAME`; see `workbook.standin`).

`from workbook import ch04` then `ch04.<name>` reaches each of them.
"""
from .checks import (DIAGNOSES, QUIZ_EXPLAIN, QUIZ_OPTIONS, check_clip_loss, check_encoders, check_quiz,
                     check_recall_at_k, check_zero_shot)
from .models import embed, linear_probe
from .plots import plot_accuracy, plot_joint_pca, plot_similarity, plot_training, show_examples
from . import standins
