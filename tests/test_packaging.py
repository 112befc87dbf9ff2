"""What `pip install .` ships: every data file the packages read at run time.

A non-editable install (a wheel) carries only the `.py` files and what
`setup.py`'s `package_data` names.  A new asset under a package (a face model,
a correspondence table, a kernel source) that the globs miss works from the
clone and fails from the wheel.  `package_data` is read from `setup.py` with
`ast`, so the test builds nothing.  Checked by hand in session 31: a wheel
built by `pip wheel --no-deps .`, installed in a new virtual environment,
reconstructs a photo through `main.py --mode test` run outside the clone.
"""

import ast
import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("shared", "mgc_face", "gcn_face")
CODE_SUFFIXES = (".py", ".pyc")


def setup_keyword(name):
  """The literal value of `setup(name=...)` in setup.py."""
  tree = ast.parse((REPO / "setup.py").read_text())
  for node in ast.walk(tree):
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
      for keyword in node.keywords:
        if keyword.arg == name:
          return ast.literal_eval(keyword.value)
  raise AssertionError(f"setup.py has no setup({name}=...)")


def data_files(package):
  """Paths (relative to the package folder) of the package's non-code files."""
  root = REPO / package
  return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
                and p.suffix not in CODE_SUFFIXES)


def test_package_data_covers_every_data_file():
  package_data = setup_keyword("package_data")
  missing = [f"{package}/{name}" for package in PACKAGES for name in data_files(package)
             if not any(fnmatch.fnmatch(name, pattern)
                        for pattern in package_data.get(package, ()))]
  assert not missing, f"not in setup.py's package_data, so not in a wheel: {missing}"


def test_package_data_globs_each_match_a_file():
  for package, patterns in setup_keyword("package_data").items():
    names = data_files(package)
    for pattern in patterns:
      assert any(fnmatch.fnmatch(n, pattern) for n in names), f"{package}: {pattern} matches nothing"


def test_shipped_assets_are_present():
  # What the embedded default needs at run time: the face model and its licence, the
  # 468-point correspondence, the rasterizer's own kernel source.
  names = set(data_files("shared"))
  for name in ("assets/ict_face_light/ict_face_light.npz",
               "assets/ict_face_light/LICENSE-ICT-FaceKit",
               "correspondence/mediapipe468_ict.npz", "render/kernels/interpolate_op.cc"):
    assert name in names
