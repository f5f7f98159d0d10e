"""Chapter 02 (denoising autoencoders): the names its notebook uses, by job.

- `checks.py`: the visible checks (`check_*`), the chapter's texts for the learner (`DIAGNOSES`,
  `QUIZ_EXPLAIN`) and the stand-ins and helpers only the checks use;
- `plots.py`: the figures;
- `standins.py`: a stand-in for each exercise that later cells use, built on a library
  (`ch02.standins.NAME`; see `workbook.standin`).

`from workbook import ch02` then `ch02.<name>` reaches each of them.
"""
from .checks import (DIAGNOSES, QUIZ_EXPLAIN, QUIZ_OPTIONS, check_denoiser, check_denoising_step,
                     check_gaussian_noise, check_masked_mse, check_occlusion, check_psnr, check_quiz,
                     check_salt_and_pepper, check_ssim)
from .plots import plot_curves, show_rows
from . import standins
