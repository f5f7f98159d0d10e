"""Chapter 06 (text-to-image latent diffusion): the names its notebook uses, by job.

- `checks.py`: the visible checks (`check_*`), the chapter's texts for the learner (`DIAGNOSES`,
  `QUIZ_EXPLAIN`) and the stand-ins and helpers only the checks use;
- `models.py`: the given models and helpers the narrative calls;
- `plots.py`: the figures;
- `standins.py`: a stand-in for each exercise that later cells use, built on a library
  (`ch06.standins.NAME`; see `workbook.standin`).

`from workbook import ch06` then `ch06.<name>` reaches each of them.
"""
from .checks import (DIAGNOSES, QUIZ_EXPLAIN, QUIZ_OPTIONS, autoencoder_parameters, check_autoencoder,
                     check_block, check_cross_attention, check_generate, check_img2img, check_quiz, check_training_loss,
                     check_unet, TextBlockStandIn,
                     copy_attention_weights, copy_block_weights, diffusers_block, mask_bias)
from .models import (DigitColourNet, load_rater, load_text_conditioner, make_scheduler, prompt, rate_images,
                     res_block, TextConditioner, time_embedding, time_proj, to_images, to_model)
from .plots import plot_attention, plot_curve, show_grid
from . import standins
