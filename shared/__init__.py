"""Shared building blocks for monocular 3D face reconstruction.

One concept per module: the 3DMM (`face_model`), its synthetic albedo
(`albedo`), coefficient layout (`coeffs`), camera (`camera`), SH lighting
(`lighting`), mesh geometry (`geometry`), the tensorflow-graphics rasterizer
(`rasterizer`, `render`), mesh sampling (`mesh_sampling`, `topology`),
alignment, landmarks, export and metrics.  Nothing here imports `mgc_face`
or `gcn_face`.
"""

__version__ = "0.1.0"
