"""experiments/colab.ipynb: its code cells run top to bottom in quick mode on the real weights."""

import json
import os
import pathlib
import subprocess
import sys

from absl.testing import absltest

from tests.conftest import CAFFEMODEL, REPO, shared_file


def notebook_code(path: pathlib.Path) -> str:
  """The notebook's code cells as one script; shell (!) and magic (%) lines are dropped."""
  cells = json.loads(path.read_text())["cells"]
  lines = []
  for cell in cells:
    if cell["cell_type"] == "code":
      lines += [l for l in "".join(cell["source"]).splitlines() if not l.lstrip().startswith(("!", "%"))]
  return "\n".join(lines) + "\n"


class ColabNotebookTest(absltest.TestCase):

  def test_code_cells_run_in_quick_mode(self):
    code = notebook_code(REPO / "experiments" / "colab.ipynb")
    self.assertIn("visualize_grid", code)
    script = code.replace("plt.show()", "plt.savefig(os.environ['OUT_PNG'])")
    out_png = self.create_tempdir().full_path + "/grid.png"
    env = dict(os.environ, RFSPEC_QUICK="1", RFSPEC_WEIGHTS=str(shared_file(CAFFEMODEL)), OUT_PNG=out_png,
               MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn("(3, 2, 96, 96, 3)", proc.stdout)
    self.assertGreater(os.path.getsize(out_png), 1000)


if __name__ == "__main__":
  absltest.main()
