"""The house drawn from rfspec's imports: every import points to a strictly lower floor, so there is
no cycle and no upward import; rfspec never imports absl or experiments/ (DESIGN.md, issue 21).

A new module fails `test_every_module_has_a_floor` until it is given one below."""

import ast
import os
import unittest

from tests.conftest import REPO

# Lowest first. A module may import only modules on floors below its own.
FLOORS = (
    ("rfspec.errors", "rfspec.files", "rfspec.param", "rfspec.recipes", "rfspec.models", "rfspec.models.preprocess",
     "rfspec.models.labels", "rfspec.weights"),
    ("rfspec.models.layers", "rfspec.locking", "rfspec.progress", "rfspec.program_cache"),  # the layer table; tools
    ("rfspec.memory", "rfspec.transforms"),  # memory estimates read the layer table only
    ("rfspec.models.googlenet",),
    ("rfspec.weights.caffe", "rfspec.masks", "rfspec.objectives", "rfspec.geometry"),
    ("rfspec.weights.store", "rfspec.engine", "rfspec.throughput"),
    ("rfspec.metrics", "rfspec.selection"),
    ("rfspec.claims",),
    ("rfspec.runs.store", "rfspec.plots", "rfspec.report"),  # files, figures and text; numbers come from below
    ("rfspec.runs.census", "rfspec.runs.figures", "rfspec.runs.atlas", "rfspec.runs.sweep"),
    ("rfspec.runs", "rfspec"),  # the packages' re-exports
)
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}


def _modules():
  """{dotted name: path} of every module under rfspec/."""
  out = {}
  for folder, _, files in os.walk(os.path.join(REPO, "rfspec")):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(folder, f)
        name = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
        out[name.removesuffix(".__init__")] = path
  return out


def _imports(name, path, modules):
  """The modules `name` imports (any depth in the file, lazy imports included), as dotted names."""
  package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(open(path).read(), path)):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")
        base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
      for a in node.names:  # `from rfspec import engine` imports the module rfspec.engine
        found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
  return found


class LayeringTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.modules = _modules()
    cls.graph = {name: _imports(name, path, cls.modules) for name, path in cls.modules.items()}

  def test_every_module_has_a_floor(self):
    self.assertEqual(sorted(set(self.modules) - set(FLOOR)), [], "give each new module a floor in FLOORS")
    self.assertEqual(sorted(set(FLOOR) - set(self.modules)), [], "FLOORS names a module that is gone")

  def test_imports_point_down(self):
    upward = [(name, dep) for name, deps in self.graph.items() for dep in deps
              if dep in self.modules and dep != name and FLOOR[dep] >= FLOOR[name]]
    self.assertEqual(sorted(upward), [])

  def test_no_flags_and_no_experiments_in_the_library(self):
    bad = [(name, dep) for name, deps in self.graph.items() for dep in deps
           if dep.split(".")[0] in ("absl", "experiments", "tests")]
    self.assertEqual(bad, [])

  def test_the_check_sees_imports(self):
    # The walk finds relative, lazy and `from rfspec import x` imports: a check that found nothing
    # would pass every test above.
    self.assertIn("rfspec.runs.store", self.graph["rfspec.runs.sweep"])
    self.assertIn("rfspec.models.layers", self.graph["rfspec.memory"])
    self.assertIn("rfspec.engine", self.graph["rfspec.selection"])


if __name__ == "__main__":
  unittest.main()
