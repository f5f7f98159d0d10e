"""Reference implementations, instructors only."""
