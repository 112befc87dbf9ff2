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

Importing this package turns TensorFlow's oneDNN CPU kernels on
(`TF_ENABLE_ONEDNN_OPTS=1`) unless the variable is already set; it acts only
when TensorFlow is imported afterwards, which every entry point of the project
ensures.  TensorFlow enables them by itself only on CPUs with AVX-512 VNNI or
newer instructions; on others (AMD's first Zen generation, older Intel) it falls
back to Eigen's convolutions.  There, with oneDNN, the `tiny` MGC network's
training step took 106 ms instead of 123 ms and the `tiny` training command 360 s
instead of 390 s (docs/mgc.md, "Session 29"), and every machine runs the same
kernels.  `TF_ENABLE_ONEDNN_OPTS=0` switches them off.
"""

import os

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
os.environ.setdefault(ONEDNN_ENV, "1")

__version__ = "0.1.0"
