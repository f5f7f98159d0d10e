"""Chapter 03 (variational autoencoders): the names its notebook uses, by job.

- `checks.py`: the visible checks (`check_*`), the chapter's texts for the learner (`DIAGNOSES`,
  `QUIZ_EXPLAIN`) and the stand-ins and helpers only the checks use;
- `plots.py`: the figures;
- `standins.py`: a stand-in for each exercise that later cells use, built on a library
  (`ch03.standins.NAME`; see `workbook.standin`).

`from workbook import ch03` then `ch03.<name>` reaches each of them.
"""
from .checks import (DIAGNOSES, QUIZ_EXPLAIN, QUIZ_OPTIONS, check_iwae, check_kl, check_negative_elbo,
                     check_quiz, check_reparameterize, check_sampling, check_vae, check_vae_step)
from .plots import image_rows, manifold, rate_distortion, scatter_latents
from . import standins
