"""User-facing errors.

`InputError` is raised for anything a user can fix: a missing or malformed
file, a bad flag, an image without a face.  Command lines catch it and print
its message as one line (no traceback).  The message always names the file
or value and the problem.
"""


import struct
import sys
import zipfile
import zlib

# What parsers raise on a corrupt or truncated file (numpy's npy/npz reader,
# zipfile, zlib, scipy.io, struct, text decoding).  Loaders catch these around
# parsing and raise `InputError` instead; never around the code after it.
CORRUPT_FILE_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError,
                       OverflowError, SyntaxError, MemoryError, zipfile.BadZipFile, zlib.error,
                       struct.error)


# Exit status of a command stopped by bad input (after its one `error:` line).
EXIT_INPUT_ERROR = 2


class InputError(Exception):
  """A problem with user input, reported as one line without a traceback."""


def report(error):
  """Prints `error` (an `InputError`, or a message naming the file or value and the problem)
  as the command's one `error:` line on stderr; returns `EXIT_INPUT_ERROR`."""
  print(f"error: {error}", file=sys.stderr)
  return EXIT_INPUT_ERROR


def corrupt(path, kind, error):
  """Raises `InputError` for a file whose parsing raised `error` (one line)."""
  detail = (str(error).strip().splitlines() or [""])[0][:200]
  raise InputError(f"{path}: corrupt or unreadable {kind} ({type(error).__name__}"
                   + (f": {detail}" if detail else "") + ")") from None


def fail(path, problem):
  """Raises `InputError` with the standard `PATH: problem` form."""
  raise InputError(f"{path}: {problem}")


def fail_none_usable(folder, problems):
  """Raises `InputError` for a folder none of whose images could be used: the one
  problem's own line when there was one, else a line counting them."""
  if len(problems) == 1:
    raise InputError(problems[0])
  raise InputError(f"{folder}: none of its {len(problems)} images could be used")
