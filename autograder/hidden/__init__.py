"""Hidden checks: run only while grading, never shipped to learners."""
