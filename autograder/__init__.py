"""Instructor tooling: build the notebooks, run the course, grade submissions."""
