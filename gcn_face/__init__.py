"""3D-Face-GCNs (Lin et al., CVPR 2020): GCN texture refinement on a coarse 3DMM fit.

The coarse stage is our own MGC regressor (`gcn_face.coarse`, the only place
that imports `mgc_face`).  Modules: `config` (presets), `layers` (Chebyshev
convolution, pool, unpool), `model` (per-vertex inputs, decoder, refiner,
combine, critic, embedding), `losses`, `binfile` (the .bin format), `train`,
`infer` (pipeline, checkpoints, test mode), `evaluate`, `cli`.
"""
