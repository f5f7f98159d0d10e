"""Chapter 02_denoising (see autograder/chapters/__init__.py for what each file holds)."""
