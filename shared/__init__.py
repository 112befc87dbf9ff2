"""Shared building blocks for monocular 3D face reconstruction.

Sub-packages by concern, lowest layer first (a module imports only from its
own layer or below; see README "Layout" and tests/test_import_graph.py):

* `shared.errors`, `shared.quiet`, `shared.io` - errors, quiet logs, files.
* `shared.mesh` - vertex normals, CoMA mesh sampling, topology files.
* `shared.model` - the 3DMM, coefficients, decoder, albedo, camera, lighting.
* `shared.render` - rasterizer, differentiable rendering, coefficient -> image.
* `shared.train`, `shared.fit`, `shared.photo`, `shared.eval` - training
  infrastructure, per-image fitting, the photo application, evaluation.

Nothing here imports `mgc_face` or `gcn_face`.
"""

__version__ = "0.1.0"
