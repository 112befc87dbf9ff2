"""Tests for shared.io.image_io: reading odd files, clear errors, atomic PNG writes."""

import cv2
import numpy as np
import pytest

from shared.io import image_io
from shared.errors import InputError


def _rgb_test_image(height=6, width=5):
  image = np.zeros((height, width, 3), np.uint8)
  image[..., 0] = 200      # R
  image[..., 1] = np.arange(width, dtype=np.uint8)[None] * 10
  image[..., 2] = 7        # B
  return image


def test_missing_file_names_the_file(tmp_path):
  path = tmp_path / "nope.jpg"
  with pytest.raises(InputError, match="nope.jpg.*not found"):
    image_io.read_image(path)


@pytest.mark.parametrize("content", [b"", b"\xff\xd8\xff\xe0 this is not a jpeg" * 20])
def test_corrupt_or_empty_file(tmp_path, content):
  path = tmp_path / "broken.jpg"
  path.write_bytes(content)
  with pytest.raises(InputError, match="broken.jpg"):
    image_io.read_image(path)
  with pytest.raises(InputError, match="broken.jpg"):
    image_io.read_image_rgba(path)


def test_folder_is_not_an_image(tmp_path):
  with pytest.raises(InputError, match="folder"):
    image_io.read_image(tmp_path)


def test_rgb_round_trip_keeps_channel_order(tmp_path):
  image = _rgb_test_image()
  path = tmp_path / "rgb.png"
  image_io.write_png(path, image)
  out = image_io.read_image(path)
  assert out.dtype == np.uint8 and out.shape == image.shape
  np.testing.assert_array_equal(out, image)
  assert not [p for p in tmp_path.iterdir() if p.name != "rgb.png"]   # no temp files left


def test_grayscale_becomes_three_channels(tmp_path):
  gray = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
  path = tmp_path / "gray.png"
  assert cv2.imwrite(str(path), gray)
  out = image_io.read_image(path)
  assert out.shape == (5, 6, 3)
  for c in range(3):
    np.testing.assert_array_equal(out[..., c], gray)
  rgba = image_io.read_image_rgba(path)
  assert rgba.shape == (5, 6, 4) and np.all(rgba[..., 3] == 255)


def test_16_bit_is_scaled_to_8_bit(tmp_path):
  values = np.array([[0, 257, 32896, 65535]], np.uint16)   # k * 257 -> k
  path = tmp_path / "deep.png"
  assert cv2.imwrite(str(path), np.dstack([values, values, values]))
  out = image_io.read_image(path)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
  gray_path = tmp_path / "deep_gray.png"
  assert cv2.imwrite(str(gray_path), values)
  np.testing.assert_array_equal(image_io.read_image(gray_path)[0, :, 1], [0, 1, 128, 255])


def test_rgba_drops_or_keeps_alpha(tmp_path):
  rgba = np.zeros((4, 3, 4), np.uint8)
  rgba[..., 0] = 250
  rgba[..., 1] = 20
  rgba[..., 3] = np.array([0, 100, 255], np.uint8)[None]
  path = tmp_path / "alpha.png"
  image_io.write_png(path, rgba)
  rgb = image_io.read_image(path)
  assert rgb.shape == (4, 3, 3)
  np.testing.assert_array_equal(rgb[0, 0], [250, 20, 0])
  kept = image_io.read_image_rgba(path)
  np.testing.assert_array_equal(kept, rgba)


def test_rgb_file_read_as_rgba_is_opaque(tmp_path):
  path = tmp_path / "rgb.jpg"
  assert cv2.imwrite(str(path), np.full((8, 8, 3), 128, np.uint8))
  out = image_io.read_image_rgba(path)
  assert out.shape == (8, 8, 4) and np.all(out[..., 3] == 255)


def _save_with_orientation(path, image, orientation):
  from PIL import Image
  exif = Image.Exif()
  exif[image_io.EXIF_ORIENTATION_TAG] = orientation
  Image.fromarray(image).save(path, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_in_both_readers(tmp_path, orientation):
  """Phone photos stored sideways come out upright, as Pillow's exif_transpose shows them."""
  from PIL import Image, ImageOps
  rng = np.random.default_rng(orientation)
  rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
  rgba[..., 3] = np.maximum(rgba[..., 3], 1)
  path = tmp_path / f"o{orientation}.png"      # lossless, so pixels compare exactly
  _save_with_orientation(path, rgba, orientation)
  with Image.open(path) as im:
    upright = np.asarray(ImageOps.exif_transpose(im))
  np.testing.assert_array_equal(image_io.read_image_rgba(path), upright)
  np.testing.assert_array_equal(image_io.read_image(path), upright[..., :3])
  assert image_io.header_size(path) == (upright.shape[1], upright.shape[0])


def test_exif_rotated_jpeg_reads_upright_in_both_readers(tmp_path):
  """JPEG (where OpenCV used to apply the tag for RGB only): both readers agree, upright."""
  image = np.zeros((40, 24, 3), np.uint8)
  image[:8] = 255                          # a white band at the top, as stored
  path = tmp_path / "phone.jpg"
  _save_with_orientation(path, image, 6)   # 6: shown turned 90 degrees clockwise
  rgb, rgba = image_io.read_image(path), image_io.read_image_rgba(path)
  assert rgb.shape == (24, 40, 3) and rgba.shape == (24, 40, 4)
  np.testing.assert_array_equal(rgba[..., :3], rgb)
  assert rgb[:, -8:].mean() > 200 and rgb[:, :-10].mean() < 30   # the band is now on the right


def test_oversized_image_is_refused_before_decoding(tmp_path, monkeypatch):
  path = tmp_path / "big.png"
  image_io.write_png(path, np.zeros((20, 30, 3), np.uint8))
  monkeypatch.setattr(image_io, "MAX_IMAGE_PIXELS", 500)
  with pytest.raises(InputError, match="big.png.*30x20"):
    image_io.read_image(path)


def test_write_png_checks_suffix_and_reports_unwritable_path(tmp_path):
  with pytest.raises(ValueError):
    image_io.write_png(tmp_path / "x.jpg", _rgb_test_image())
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  with pytest.raises(InputError, match="cannot write"):
    image_io.write_png(blocker / "out.png", _rgb_test_image())
  with pytest.raises(ValueError):
    image_io.write_png(tmp_path / "f.png", np.zeros((4, 4, 3), np.int32))
  image_io.write_png(tmp_path / "f.png", np.full((4, 4, 3), 0.5, np.float32))
  np.testing.assert_array_equal(image_io.read_image(tmp_path / "f.png"), 128)


def test_to_uint8_rounds_clips_and_scales_16_bit():
  np.testing.assert_array_equal(image_io.to_uint8([[-0.1, 0.0, 0.4999, 0.5, 1.0, 1.7]]),
                                [[0, 0, 127, 128, 255, 255]])
  np.testing.assert_array_equal(image_io.to_uint8(np.array([0, 257, 65535], np.uint16)),
                                [0, 1, 255])


LOSSLESS_8BIT = {".png", ".bmp", ".dib", ".tif", ".tiff", ".ppm", ".pnm", ".sr", ".ras"}
GRAY_ONLY = {".pgm", ".pbm"}
FLOAT_FORMATS = {".pfm", ".hdr", ".pic"}   # Linear float: read back through the [0, 1] clip.
PALETTE_FORMATS = {".gif"}   # Written with Pillow: exact for an image of few colours.


@pytest.mark.parametrize("suffix", image_io.IMAGE_SUFFIXES)
def test_every_listed_format_reads_and_is_listed(tmp_path, suffix):
  rgb = _rgb_test_image(12, 10)
  path = tmp_path / f"photo{suffix.upper() if suffix == '.ppm' else suffix}"
  if suffix in GRAY_ONLY:
    source = rgb[..., 1]
    if suffix == ".pbm":  # 1 bit: black or white.
      source = np.where(source >= 50, 255, 0).astype(np.uint8)
    written = cv2.imwrite(str(path), source)
    expected = np.repeat(source[..., None], 3, axis=2)
  elif suffix in PALETTE_FORMATS:
    from PIL import Image
    Image.fromarray(rgb).save(path)
    written, expected = True, rgb
  elif suffix in FLOAT_FORMATS:
    source = rgb.astype(np.float32) / 255.0
    written = cv2.imwrite(str(path), cv2.cvtColor(source, cv2.COLOR_RGB2BGR))
    expected = rgb
  else:
    written = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    expected = rgb
  assert written, suffix
  (tmp_path / "notes.txt").write_text("not an image")
  assert image_io.list_images(tmp_path) == [path]
  image = image_io.read_image(path)
  assert image.shape == (12, 10, 3) and image.dtype == np.uint8
  tolerance = 0 if suffix in LOSSLESS_8BIT | GRAY_ONLY | PALETTE_FORMATS else 40
  if suffix in FLOAT_FORMATS:
    tolerance = 3    # .hdr keeps 8 mantissa bits per channel.
  assert np.abs(image.astype(int) - expected).max() <= tolerance, suffix


def test_list_images_skips_outputs_and_recurses(tmp_path):
  rgb = _rgb_test_image()
  (tmp_path / "sub").mkdir()
  for name in ("a.ppm", "a_overlay.png", "sub/b.webp"):
    cv2.imwrite(str(tmp_path / name), rgb)
  assert image_io.list_images(tmp_path, skip_stem_suffixes=("_overlay",)) == [tmp_path / "a.ppm"]
  assert image_io.list_images(tmp_path, recursive=True) == sorted(
      [tmp_path / "a.ppm", tmp_path / "a_overlay.png", tmp_path / "sub" / "b.webp"])


def test_output_stems_are_unique_and_keep_plain_stems():
  paths = ["a/photo.jpg", "a/photo.PNG", "a/other.jpg", "b/photo.jpg", "c/photo.jpg",
           "a/photo_jpg_2.png"]
  stems = image_io.output_stems(paths)
  assert stems == ["photo_jpg", "photo_png", "other", "photo_jpg_3", "photo_jpg_4", "photo_jpg_2"]
  assert len(set(stems)) == len(stems)
  assert image_io.output_stems(["x/one.jpg", "y/two.png"]) == ["one", "two"]
  assert image_io.output_stems([]) == []
  # Case-insensitive file systems (macOS, Windows): Photo and photo are one name.
  assert image_io.output_stems(["Photo.JPG", "photo.png", "PHOTO.png"]) == [
      "Photo_jpg", "photo_png", "PHOTO_png_2"]


def test_sample_image_is_rgb_uint8_for_colour_grey_and_binary_pictures():
  """scikit-image's samples come as [H, W, 3] uint8 RGB: colour as stored, grey copied to three
  channels, a binary silhouette as 0 / 255, alpha dropped."""
  import skimage.data
  np.testing.assert_array_equal(image_io.sample_image("astronaut"), skimage.data.astronaut())
  camera = image_io.sample_image("camera")
  np.testing.assert_array_equal(camera, np.repeat(skimage.data.camera()[..., None], 3, -1))
  horse = image_io.sample_image("horse")
  assert horse.dtype == np.uint8 and horse.shape[2] == 3 and set(np.unique(horse)) == {0, 255}
  assert image_io.sample_image("logo").shape[2] == 3   # RGBA in scikit-image
