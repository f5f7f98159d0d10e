"""Support code every chapter imports: profiles, data, checks, plots and results.

Learners may read all of it; it contains no exercise solutions.
"""
