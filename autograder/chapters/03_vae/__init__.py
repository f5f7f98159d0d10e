"""Chapter 03_vae (see autograder/chapters/__init__.py for what each file holds)."""
