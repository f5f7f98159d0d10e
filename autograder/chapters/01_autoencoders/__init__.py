"""Chapter 01_autoencoders (see autograder/chapters/__init__.py for what each file holds)."""
