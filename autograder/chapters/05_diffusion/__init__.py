"""Chapter 05_diffusion (see autograder/chapters/__init__.py for what each file holds)."""
