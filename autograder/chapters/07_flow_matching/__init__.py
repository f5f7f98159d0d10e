"""Chapter 07_flow_matching (see autograder/chapters/__init__.py for what each file holds)."""
