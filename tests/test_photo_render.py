"""Tests for shared.photo.photo_render: the crop camera plus the crop -> photo
similarity as one camera rendering in the photo's frame."""

import math

import numpy as np
import pytest
import tensorflow as tf

from shared.photo import alignment

from shared.photo import photo_render
from shared.model import camera as camera_lib


def _similarity(scale, angle, shift):
  c, s = math.cos(angle), math.sin(angle)
  return np.array([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]])


@pytest.mark.parametrize("scale,angle", [(1.0, 0.0), (2.7, 0.4), (0.6, -1.1)])
def test_window_camera_projects_like_the_crop_then_the_similarity(scale, angle):
  rng = np.random.default_rng(1)
  posed = rng.uniform(-0.8, 0.8, (50, 3)).astype(np.float32)
  crop = camera_lib.Camera()
  to_photo = _similarity(scale, angle, (310.3, 95.7))
  rolled, camera, to_frame = photo_render.window_camera(posed, crop, to_photo)
  in_window = camera_lib.project(rolled, camera).numpy()[0]
  expected = alignment.transform_points(camera_lib.project(posed[None], crop).numpy()[0], to_photo)
  np.testing.assert_allclose(alignment.transform_points(in_window, to_frame), expected, atol=2e-3)
  # The window just holds the points.
  assert in_window.min() >= 0 and in_window.max() <= camera.image_size


def test_render_in_photo_lands_where_the_similarity_maps_the_crop_render(ict_model):
  from shared.render.face_image import FaceSynthesizer
  synth = FaceSynthesizer(ict_model)
  coeffs = synth.layout.zeros(1)._replace(rotation=tf.constant([[0.1, 0.5, 0.2]]))
  syn = synth(coeffs)
  to_photo = _similarity(1.9, 0.3, (40.0, 60.0))
  size = (900, 800)     # holds the whole face (no clipping of the centroid)
  ones = np.ones((ict_model.num_vertices, 1), np.float32)
  layers = photo_render.render_in_photo(syn.posed.numpy()[0], ict_model.faces, ones,
                                        synth.camera, to_photo, size)
  warped = alignment.warp_affine(syn.render.mask.numpy()[0], to_photo, size, border=0)
  # The crop render is cut at the crop's edge; compare inside its footprint.
  footprint = alignment.warp_affine(np.ones((224, 224), np.float32), to_photo, size, border=0) > 0.99
  sharp = (layers.alpha[..., 0] > 0.5) & footprint
  coarse = (warped > 0.5) & footprint
  assert sharp.shape == (800, 900)
  # Same silhouette up to the warp's resampling at the border.
  assert (sharp ^ coarse).sum() < 0.03 * coarse.sum()
  ys, xs = np.nonzero(sharp)
  yc, xc = np.nonzero(coarse)
  np.testing.assert_allclose([xs.mean(), ys.mean()], [xc.mean(), yc.mean()], atol=1.0)
  # And beyond the crop: the photo-frame render goes on where the crop's stops.
  assert (layers.alpha[..., 0] > 0.5)[~footprint].sum() > 0.05 * coarse.sum()
  # Depth: positive inside, near the crop's depth (the same camera distance).
  inside = layers.depth[..., 0][sharp]
  crop_depth = syn.render.depth.numpy()[0, ..., 0][syn.render.mask.numpy()[0, ..., 0] > 0.5]
  assert inside.min() > 0 and abs(np.median(inside) - np.median(crop_depth)) < 0.05


def test_region_weights_fall_off_inside_the_region(ict_model):
  w = photo_render.region_weights(ict_model)
  inside = ict_model.skin_mask > 0
  assert w.shape == (ict_model.num_vertices,) and w.min() >= 0 and w.max() <= 1
  assert np.all(w[~inside] == 0)
  assert np.median(w[inside]) > 0.99 and 0 < (w[inside] < 0.99).mean() < 0.5
