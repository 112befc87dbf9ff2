"""The package import graph: no circles, no upward imports, a documented layering.

Imports are read with `ast` from every module of `shared`, `mgc_face` and
`gcn_face` (function-level imports included), so the test needs no TensorFlow.

Layering of `shared` (README "Layout"), lowest first; a module imports only
from its own layer or below:

    errors, quiet, config_overrides  <  io  <  mesh  <  model  <  render  <  train  <  fit  <  photo  <  eval  <  cli

`shared` imports neither model package; `mgc_face` imports `shared` only;
`gcn_face` imports `mgc_face` only from `gcn_face/coarse.py` (the MGC coarse stage).
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("shared", "mgc_face", "gcn_face")
SHARED_LAYERS = (
    ("shared", "shared.errors", "shared.quiet", "shared.config_overrides"),
    ("shared.io",),
    ("shared.mesh",),
    ("shared.model",),
    ("shared.render",),
    ("shared.train",),
    ("shared.fit",),
    ("shared.photo",),
    ("shared.eval",),
    ("shared.cli",),
)
GCN_COARSE = "gcn_face.coarse"


def module_files():
  """{module name: path} for every module of the three packages."""
  out = {}
  for package in PACKAGES:
    for path in sorted((REPO / package).rglob("*.py")):
      parts = path.relative_to(REPO).with_suffix("").parts
      if parts[-1] == "__init__":
        parts = parts[:-1]
      out[".".join(parts)] = path
  return out


def _resolve(name, modules):
  """The longest known module that `name` (a module or module.attribute) names."""
  while name and name not in modules:
    name = name.rpartition(".")[0]
  return name or None


def import_graph():
  """{module: set of project modules it imports}, from the source text."""
  modules = module_files()
  graph = {}
  for name, path in modules.items():
    targets = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # Relative import.
          anchor = package.split(".")
          anchor = anchor[:len(anchor) - node.level + 1]
          base = ".".join(anchor + ([base] if base else []))
        names = [f"{base}.{alias.name}" for alias in node.names] + [base]
      else:
        continue
      for target in names:
        resolved = _resolve(target, modules)
        if resolved and resolved != name and not name.startswith(resolved + "."):
          targets.add(resolved)
    graph[name] = targets
  return graph


def find_cycle(graph):
  """One import circle as a list of modules, or None."""
  state = {}
  stack = []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def shared_layer(module):
  """Index of `module`'s layer in SHARED_LAYERS (longest matching prefix)."""
  best, index = -1, None
  for i, layer in enumerate(SHARED_LAYERS):
    for prefix in layer:
      if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
        best, index = len(prefix), i
  return index


def test_graph_sees_known_edges():
  graph = import_graph()
  assert "shared.model.face_model" in graph["mgc_face.model"] or any(
      m.startswith("shared.") for m in graph["mgc_face.model"])
  assert "mgc_face" in {m.split(".")[0] for m in graph[GCN_COARSE]}
  assert "shared.render.rasterizer" in graph["shared.render.renderer"]


def test_no_import_circle():
  cycle = find_cycle(import_graph())
  assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_shared_imports_no_model_package():
  bad = [(m, t) for m, targets in import_graph().items() if m.split(".")[0] == "shared"
         for t in targets if t.split(".")[0] != "shared"]
  assert not bad, bad


def test_model_packages_import_down_only():
  bad = []
  for module, targets in import_graph().items():
    top = module.split(".")[0]
    for target in targets:
      other = target.split(".")[0]
      if top == "mgc_face" and other == "gcn_face":
        bad.append((module, target))
      if top == "gcn_face" and other == "mgc_face" and module != GCN_COARSE:
        bad.append((module, target))
  assert not bad, f"only {GCN_COARSE} may import mgc_face: {bad}"


def test_every_shared_module_has_a_layer():
  missing = [m for m in import_graph() if m.startswith("shared") and shared_layer(m) is None]
  assert not missing, f"add these to SHARED_LAYERS (and README Layout): {missing}"


def test_shared_layering():
  bad = []
  for module, targets in import_graph().items():
    if not module.startswith("shared"):
      continue
    for target in targets:
      if shared_layer(target) is not None and shared_layer(module) is not None and \
          shared_layer(target) > shared_layer(module):
        bad.append(f"{module} (layer {shared_layer(module)}) imports {target} "
                   f"(layer {shared_layer(target)})")
  assert not bad, "upward imports:\n" + "\n".join(bad)
