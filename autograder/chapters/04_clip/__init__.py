"""Chapter 04_clip (see autograder/chapters/__init__.py for what each file holds)."""
