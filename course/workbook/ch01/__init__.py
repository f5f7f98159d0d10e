"""Chapter 01 (PCA and autoencoders): the names its notebook uses, by job.

- `checks.py`: the visible checks (`check_*`), the chapter's texts for the learner (`DIAGNOSES`,
  `QUIZ_EXPLAIN`) and the stand-ins and helpers only the checks use;
- `plots.py`: the figures;
- `standins.py`: a stand-in for each exercise that later cells use, built on a library
  (`ch01.standins.NAME`; see `workbook.standin`).

`from workbook import ch01` then `ch01.<name>` reaches each of them.
"""
from .checks import (DIAGNOSES, QUIZ_EXPLAIN, QUIZ_OPTIONS, check_autoencoders, check_pca,
                     check_principal_angles, check_quiz, check_retrieval_precision, check_train_step)
from .plots import scatter_codes, show_reconstructions
from . import standins
