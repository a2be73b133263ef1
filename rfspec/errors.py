"""The one exception class for mistakes a user can fix.

`UserError` is raised where the library meets user input (a tap name, a mask, a config field, a
weights file, a cache directory). Its message is one paragraph that names the fix. The binaries
in `experiments/` print it without a traceback and exit 1; every other exception is a bug and
keeps its traceback. It subclasses ValueError so `except ValueError` in user code still works.
"""

__all__ = ["UserError"]


class UserError(ValueError):
  """A mistake the user can fix; the message says how."""
