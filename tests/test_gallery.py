"""The face model gallery (shared/render/gallery.py): its coefficients, and the picture against a golden image.

The golden image is the gallery of the embedded ICT model, reduced 4x by area
averaging (tests/data/gallery_ict_quarter.png, 336 x 112).  It was made from
this code and checked by eye (six faces in the listed poses and expressions,
depth below).  After an intended change of the picture, look at the new one
and rewrite it with FACE3D_UPDATE_GOLDEN=1.
"""

import os
from pathlib import Path

import cv2
import numpy as np

from shared.render import gallery
from shared.render.face_image import FaceSynthesizer

GOLDEN = Path(__file__).parent / "data" / "gallery_ict_quarter.png"
REDUCE = 4
MEAN_TOLERANCE = 0.5 / 255   # Mean absolute difference of the reduced picture (0.2 / 255 here) ...
PIXEL_TOLERANCE = 0.05       # ... and the most any reduced pixel may differ (0.002 here).
UPDATE_ENV = "FACE3D_UPDATE_GOLDEN"


def reduce(picture):
  h, w = picture.shape[:2]
  return cv2.resize(picture.astype(np.float32), (w // REDUCE, h // REDUCE),
                    interpolation=cv2.INTER_AREA)


def test_gallery_coefficients_mean_face_first_then_one_expression_each(ict_model):
  config = gallery.GalleryConfig()
  synthesizer = FaceSynthesizer(ict_model)
  coeffs = gallery.gallery_coefficients(synthesizer, config)
  n = len(config.poses)
  identity, expression = coeffs.identity.numpy(), coeffs.expression.numpy()
  assert identity.shape == (n, synthesizer.layout.num_id)
  np.testing.assert_array_equal(identity[0], 0.0)
  np.testing.assert_array_equal(coeffs.albedo.numpy()[0], 0.0)
  np.testing.assert_array_equal(expression[0], 0.0)
  for row in expression[1:]:  # One expression per picture, at the configured scale.
    assert np.count_nonzero(row) == 1 and row.max() == config.expression_scale
  np.testing.assert_allclose(coeffs.rotation.numpy(), np.radians(config.poses), atol=1e-7)
  sh = coeffs.lighting.numpy().reshape(n, 3, gallery.NUM_SH_BANDS)
  for band, value in gallery.SH_KEY_LIGHT.items():  # The same grey key light in every picture.
    np.testing.assert_allclose(sh[:, :, band], value, rtol=1e-6)
  # The same seed gives the same gallery.
  again = gallery.gallery_coefficients(synthesizer, config)
  np.testing.assert_array_equal(again.identity.numpy(), identity)


def test_gallery_picture_matches_the_golden_image(ict_model, tmp_path):
  path = tmp_path / "gallery.png"
  picture = gallery.render_gallery(ict_model, path)
  size = FaceSynthesizer(ict_model).camera.image_size
  assert picture.shape == (2 * size, len(gallery.GalleryConfig().poses) * size, 3)
  written = cv2.imread(str(path))[..., ::-1].astype(np.float32) / 255
  np.testing.assert_allclose(written, picture, atol=1 / 255 + 1e-6)  # The PNG is the picture.
  reduced = reduce(picture)
  if os.environ.get(UPDATE_ENV):
    GOLDEN.parent.mkdir(exist_ok=True)
    cv2.imwrite(str(GOLDEN), np.round(np.clip(reduced, 0, 1) * 255).astype(np.uint8)[..., ::-1])
  golden = cv2.imread(str(GOLDEN))[..., ::-1].astype(np.float32) / 255
  assert golden.shape == reduced.shape
  difference = np.abs(reduced - golden)
  assert difference.mean() < MEAN_TOLERANCE, difference.mean()
  assert difference.max() < PIXEL_TOLERANCE, difference.max()
  # Not a blank picture: the faces stand out from the background.
  assert (np.abs(golden - gallery.GalleryConfig().background).sum(-1) > 0.1).mean() > 0.2
