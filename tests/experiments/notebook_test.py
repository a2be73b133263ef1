"""experiments/colab.ipynb runs top to bottom under nbclient from Jupyter's default directory (the
notebook's own, experiments/), in quick mode on random weights of the real shapes (the notebook
checks its pipeline, not the net's numbers); its install cell finds the checkout from there and
stops the notebook when it cannot install."""

import os
import pathlib
import subprocess
from unittest import mock

import nbformat
import pytest
from absl.testing import absltest
from nbclient import NotebookClient

from tests.conftest import REPO, smoke_env, tiny_weights

NOTEBOOK = REPO / "experiments" / "colab.ipynb"


def code_cells(nb) -> list:
  return [c for c in nb.cells if c.cell_type == "code"]


def text_of(cell) -> str:
  """Everything a cell printed or displayed as text."""
  parts = []
  for out in cell.get("outputs", []):
    parts.append(out.get("text", ""))
    parts.append(out.get("data", {}).get("text/plain", ""))
  return "".join(parts)


class ColabNotebookTest(absltest.TestCase):

  @pytest.mark.slow
  def test_runs_top_to_bottom_from_the_notebooks_directory(self):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {"RFSPEC_QUICK": "1", "RFSPEC_WEIGHTS": tiny_weights(), **smoke_env()}
    with mock.patch.dict(os.environ, env):
      os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend must capture the figure
      # Jupyter's kernel starts in the notebook's folder; a failing cell raises CellExecutionError.
      NotebookClient(nb, timeout=600, kernel_name="python3",
                     resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    cells = code_cells(nb)
    self.assertIn(f"rfspec from {REPO}", text_of(cells[0]))
    self.assertIn("(3, 2, 96, 96, 3)", "".join(text_of(c) for c in cells))
    last = cells[-1]["outputs"]
    self.assertTrue(any("image/png" in out.get("data", {}) for out in last), "the grid was not shown")

  def install_cell_source(self) -> str:
    return code_cells(nbformat.read(NOTEBOOK, as_version=4))[0].source

  def run_install_cell(self, cwd: str):
    old = os.getcwd()
    os.chdir(cwd)
    try:
      exec(compile(self.install_cell_source(), "colab.ipynb[install]", "exec"), {})  # noqa: S102
    finally:
      os.chdir(old)

  def test_install_cell_stops_outside_a_checkout(self):
    with self.assertRaisesRegex(RuntimeError, "No rfspec checkout"):
      self.run_install_cell(self.create_tempdir().full_path)

  def test_install_cell_stops_when_pip_fails(self):
    # A checkout that is not the installed rfspec must be installed; pip failing must raise.
    fake = pathlib.Path(self.create_tempdir().full_path)
    (fake / "rfspec").mkdir()
    (fake / "setup.py").write_text("")
    (fake / "experiments").mkdir()
    failed = subprocess.CalledProcessError(1, ["pip", "install"])
    with mock.patch.object(subprocess, "run", side_effect=failed) as pip:
      with self.assertRaises(subprocess.CalledProcessError):
        self.run_install_cell(str(fake / "experiments"))
    self.assertIn(str(fake), pip.call_args.args[0])


if __name__ == "__main__":
  absltest.main()
