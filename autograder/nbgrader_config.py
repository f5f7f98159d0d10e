"""nbgrader configuration of the workbook's course.

Commands that use it run from a course root that the workbook's own tools lay out in a
temporary directory (`python -m autograder build|grade`), never from the repository.
"""
c = get_config()  # noqa: F821  (nbgrader injects get_config)

c.CourseDirectory.course_id = "generative-dl-from-scratch"
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"

# What a learner sees in place of a solution body.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Grading: a deleted test cell is put back (with its hidden tests) and scored.
c.OverwriteCells.add_missing_cells = True
# Per-cell time limit (seconds) while grading in the smoke profile; the grading command
# also bounds each submission's total wall time.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
c.Execute.raise_on_iopub_timeout = False
# A cell that ignores that interrupt: the kernel is stopped `interrupt_grace` seconds later
# and the rest of the notebook is recorded as not run (autograder/execute.py).
from autograder.execute import autograde_preprocessors  # noqa: E402

c.Autograde.autograde_preprocessors = autograde_preprocessors()
c.BoundedExecute.interrupt_grace = 10
# After the last cell every output is in the notebook: the kernel is killed, not asked to
# shut down (the sandbox ends its whole PID namespace and control group either way).
c.BoundedExecute.shutdown_kernel = "immediate"
