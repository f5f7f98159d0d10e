"""nbgrader's settings for learners: what Validate uses (the Validate button in JupyterLab,
or `nbgrader validate NN_topic.ipynb` run in this folder).

- The notebook runs in the `smoke` profile (workbook.profile picks it while nbgrader
  executes), so a chapter validates in about a minute; results need the `cpu` profile.
- A cell may take 10 minutes before it is interrupted.
- Every code cell counts, not only the graded ones: a cell that failed, was interrupted or
  wrote to stderr makes Validate fail and is listed, so "Success!" means the whole notebook
  ran. (Grading uses the instructor's own settings, not these.)
"""
c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.Execute.timeout = 600
c.Validator.validate_all = True
