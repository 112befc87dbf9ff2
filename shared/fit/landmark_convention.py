"""Landmark conventions: which model vertices are the 68 landmarks.

ICT-FaceKit's own `landmarks68` put landmarks 0-16 on the front of the
cheeks, 2-3 cm inside the jaw line where BFM (Deep3D, MGCNet, 3DDFA and the
AFLW2000-3D ground truth) has them; `bfm_landmark_convention` swaps in the
ICT vertices that correspond to BFM's keypoints.
"""

import dataclasses

import numpy as np

NUM_LANDMARKS = 68
CONTOUR = slice(0, 17)                 # 0-based jaw landmarks

# ICT-FaceKit (face area, 9409 vertices): its own jaw landmarks 0-16
# (`idx_to_landmark_verts` in vertex_indices.json) and the vertices that
# correspond to BFM's jaw keypoints.  Derived once: Deep3D_mean.obj (BFM
# front mean) was aligned to the ICT mean shape by a 3D similarity on the 51
# interior landmarks (residual 2.9 mm), each BFM jaw keypoint
# (facemodel_info.mat `keypoints`) took its nearest ICT vertex (within
# 0.5-4.4 mm), and the right side was mirrored from the left.  The commands
# are in docs/photos.md.
ICT_NUM_VERTICES = 9409
ICT_JAW_LANDMARKS = (1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661, 4390, 3927,
                     3924, 2608, 3272, 4088, 3443)
ICT_BFM_JAW_LANDMARKS = (8129, 8050, 7885, 8841, 8859, 1831, 790, 2196, 969, 4387, 3031, 4033,
                         9182, 9164, 7158, 7323, 7402)
# All 68 BFM keypoints the same way (same similarity, nearest ICT vertex, no
# mirroring; the jaw above is the mirrored version of 0-16).  ICT's interior
# landmarks lie 0.7-8.7 mm from BFM's (inner brows 6-9 mm, nose bridge 5-8
# mm).  Used for the 68 OUTPUT points of a fit that follows other points
# (the 468 dense ones), where the 68 need only match the convention of the
# ground truth (AFLW2000-3D: BFM keypoints), not a detector's.
# The lower inner lip (65-67): on the closed mean mouth the upper and lower lips' inner
# edges touch, and the nearest vertex had put 65-67 on the UPPER lip (65 and 67 on the
# vertices of 63 and 61), so an open mouth's output points stayed shut (session 42).  They
# are the nearest lower-lip vertices instead (0.8-0.9 mm away on the mean; lower lip: moved
# down by more than 20 mm by 2 std of ICT's jawOpen, as 57 is by 71 mm; 61-63 move 5-6 mm).
ICT_BFM_LANDMARKS68 = ICT_BFM_JAW_LANDMARKS + (
    267, 1009, 1031, 1416, 2033, 4230, 3630, 3251, 3229, 2508, 971, 979, 4842, 4841, 4562, 2076,
    5, 4270, 5027, 6590, 1542, 1931, 1372, 1518, 1551, 3587, 3787, 3756, 6548, 3765, 3732, 5929,
    5695, 2069, 0, 4263, 6200, 6434, 6330, 6481, 5945, 5977, 5825, 5749, 5736, 5526, 6241, 6066,
    6485, 5517, 5981)


def bfm_landmark_convention(face_model, interior=False):
  """The face model with BFM-convention jaw landmarks, when it is ICT-FaceKit.

  For ICT-FaceKit (9409 vertices with ICT's own jaw landmarks) returns a copy
  whose `landmarks68[0:17]` are `ICT_BFM_JAW_LANDMARKS`; any other model is
  returned unchanged.  With `interior`, all 68 become BFM's keypoints
  (`ICT_BFM_LANDMARKS68`).  Coefficients are unaffected (same mesh and bases), so
  a regressor built on the original model works with the copy.

  Effect, AFLW2000-16, 12 faces dlib finds, fitted from the mean face: NME
  3.4 % with these jaw vertices, 4.4 % with ICT's (docs/photos.md).
  """
  lm = np.asarray(face_model.landmarks68)
  if (face_model.num_vertices != ICT_NUM_VERTICES or
      tuple(int(i) for i in lm[CONTOUR]) != ICT_JAW_LANDMARKS):
    return face_model
  lm = lm.copy()
  lm[CONTOUR] = ICT_BFM_JAW_LANDMARKS
  if interior:
    lm[:] = ICT_BFM_LANDMARKS68
  return dataclasses.replace(face_model, landmarks68=lm.astype(np.int32),
                             name=face_model.name + ", BFM jaw landmarks")
