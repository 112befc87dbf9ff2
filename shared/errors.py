"""User-facing errors.

`InputError` is raised for anything a user can fix: a missing or malformed
file, a bad flag, an image without a face.  Command lines catch it and print
its message as one line (no traceback).  The message always names the file
or value and the problem.
"""


class InputError(Exception):
  """A problem with user input, reported as one line without a traceback."""


def fail(path, problem):
  """Raises `InputError` with the standard `PATH: problem` form."""
  raise InputError(f"{path}: {problem}")
