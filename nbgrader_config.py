"""nbgrader course configuration: solutions/ is the source, notebooks/ the release.

``make notebooks`` runs ``nbgrader generate_assignment`` for every exercise folder; instructors run
``nbgrader autograde exNN_<topic>`` with the lab stack up (the autograder cells query it).
"""

c = get_config()  # noqa: F821 - injected by traitlets when nbgrader loads this file

c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
# The live checks drive traffic and wait for scrapes: far longer than nbgrader's 30 s default.
c.Execute.timeout = 300
c.Execute.kernel_name = "workbook"
# Grading files that must never reach students' release folders.
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints",
    "*.pyc",
    "__pycache__",
    "feedback",
    "answers_ex*.json",
]
