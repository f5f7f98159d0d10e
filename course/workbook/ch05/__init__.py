"""Chapter 05 (denoising diffusion): the names its notebook uses, by job.

- `checks.py`: the visible checks (`check_*`), the chapter's texts for the learner (`DIAGNOSES`,
  `QUIZ_EXPLAIN`) and the stand-ins and helpers only the checks use;
- `models.py`: the given models and helpers the narrative calls;
- `plots.py`: the figures;
- `standins.py`: a stand-in for each exercise that later cells use, built on a library
  (`ch05.standins.NAME`; see `workbook.standin`).

`from workbook import ch05` then `ch05.<name>` reaches each of them.
"""
from .checks import (DIAGNOSES, DIFFUSERS_RESBLOCK_NAMES, QUIZ_EXPLAIN, QUIZ_OPTIONS, check_ddim_step,
                     check_ddpm_step, check_diffusion_loss, check_guidance, check_q_sample, check_quiz,
                     check_sample_ddim, check_sample_ddpm, check_schedules, check_time_embedding, check_unet)
from .models import EMA, ddim_timesteps, to_images, toy_data, ToyDenoiser
from .plots import plot_curve, plot_schedules, plot_toy_steps, show_rows
from . import standins
