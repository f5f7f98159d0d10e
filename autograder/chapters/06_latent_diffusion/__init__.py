"""Chapter 06_latent_diffusion (see autograder/chapters/__init__.py for what each file holds)."""
