"""Held-out evaluation metrics of the GCN stage against numpy / scikit-image references."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gcn_face import binfile
from gcn_face import evaluate
from gcn_face import infer

SIZE = 32
BORDER = 3   # scikit-image averages its SSIM map without a border of (7 - 1) / 2 pixels.


def pair(seed=0):
  rng = np.random.default_rng(seed)
  image = rng.uniform(0, 1, (SIZE, SIZE, 3))
  render = np.clip(image + rng.normal(0, 0.1, image.shape), 0, 1)
  return image, render


def test_metrics_full_mask_match_references():
  image, render = pair()
  mask = np.zeros((SIZE, SIZE, 1))
  mask[BORDER:-BORDER, BORDER:-BORDER] = 1
  got = evaluate.masked_metrics(image, render, mask)
  inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
  assert got["l1"] == pytest.approx(np.abs(image - render)[inner].mean(), rel=1e-12)
  assert got["psnr"] == pytest.approx(
      peak_signal_noise_ratio(image[inner], render[inner], data_range=1.0), rel=1e-12)
  assert got["ssim"] == pytest.approx(
      structural_similarity(image, render, channel_axis=-1, data_range=1.0), rel=1e-9)


def test_metrics_masked_region_only():
  image, render = pair(1)
  mask = np.zeros((SIZE, SIZE))
  mask[8:20, 10:24] = 1
  worse = render.copy()
  worse[mask == 0] = 1 - worse[mask == 0]     # Outside the face: must not matter.
  a = evaluate.masked_metrics(image, render, mask)
  b = evaluate.masked_metrics(image, worse, mask)
  assert a["l1"] == pytest.approx(b["l1"]) and a["psnr"] == pytest.approx(b["psnr"])
  diff = (image - render)[mask > 0]
  assert a["psnr"] == pytest.approx(10 * np.log10(1 / np.mean(diff ** 2)))
  assert evaluate.masked_metrics(image, render, np.zeros((SIZE, SIZE))) is None


def test_albedo_rmse_on_visible_vertices():
  rng = np.random.default_rng(2)
  albedo, truth = rng.uniform(0, 1, (50, 3)), rng.uniform(0, 1, (50, 3))
  vis = rng.uniform(0, 1, (50, 1))
  seen = vis[:, 0] > evaluate.VISIBLE_THRESHOLD
  want = np.sqrt(np.mean((albedo[seen] - truth[seen]) ** 2))
  assert evaluate.albedo_rmse(albedo, truth, vis) == pytest.approx(want, rel=1e-12)
  assert evaluate.albedo_rmse(albedo, truth, np.zeros(50)) is None


def test_albedo_si_rmse_ignores_brightness():
  """Equals a brute-force search over the scale; k x albedo scores the same."""
  rng = np.random.default_rng(4)
  albedo, truth = rng.uniform(0.2, 0.8, (60, 3)), rng.uniform(0.2, 0.8, (60, 3))
  vis = rng.uniform(0, 1, 60)
  seen = vis > evaluate.VISIBLE_THRESHOLD
  scales = np.linspace(0.5, 2.0, 1501)[:, None, None]
  brute = np.sqrt(np.mean((scales * albedo[seen] - truth[seen]) ** 2, axis=(1, 2))).min()
  got = evaluate.albedo_si_rmse(albedo, truth, vis)
  assert got == pytest.approx(brute, rel=1e-4) and got <= brute
  assert evaluate.albedo_si_rmse(0.6 * albedo, truth, vis) == pytest.approx(got, rel=1e-12)
  assert evaluate.albedo_si_rmse(1.3 * truth, truth, vis) == pytest.approx(0.0, abs=1e-12)
  assert got < evaluate.albedo_rmse(albedo, truth, vis)
  assert evaluate.albedo_si_rmse(albedo, truth, np.zeros(60)) is None
  zero = evaluate.albedo_si_rmse(np.zeros((60, 3)), truth, vis)
  assert zero == pytest.approx(np.sqrt(np.mean(truth[seen] ** 2)))


def test_truth_albedo_found_beside_the_strips(tmp_path):
  """Records 'SUB/FRAME' and 'SUB/FRAME#k' read SOURCE/SUB/FRAME_gt.npz's albedo."""
  albedo = np.random.default_rng(3).uniform(0, 1, (10, 3)).astype(np.float32)
  (tmp_path / "src" / "id1").mkdir(parents=True)
  np.savez(tmp_path / "src" / "id1" / "000_gt.npz", albedo=albedo)
  np.savez(tmp_path / "src" / "id1" / "001_gt.npz", posed=albedo)  # No albedo in it.
  records = [np.zeros((4, 4, 4), np.uint8)] * 4
  path = tmp_path / "x.bin"
  binfile.write_bin(path, records, ["id1/000", "id1/000#2", "id1/001", "id2/000"],
                    {"source": str(tmp_path / "src")})
  got = evaluate.truth_albedo(binfile.BinReader(path), 10)
  np.testing.assert_array_equal(got[0], albedo)
  np.testing.assert_array_equal(got[1], albedo)
  assert got[2] is None and got[3] is None
  assert evaluate.truth_albedo(binfile.BinReader(path), 11) == [None] * 4  # Other mesh.


def test_comparison_picture_layout():
  image = np.full((SIZE, SIZE, 3), 0.5)
  mask = np.zeros((SIZE, SIZE, 1))
  mask[:SIZE // 2] = 1
  renders = [np.full((SIZE, SIZE, 3), v) for v in (0.1, 0.2, 0.3)]
  picture = evaluate.comparison_picture(image, mask, renders, renders)
  assert picture.shape == (2 * SIZE, 4 * SIZE, 3)
  assert picture[0, SIZE, 0] == pytest.approx(0.1) and picture[-1, SIZE, 0] == 1.0
  assert picture[0, 3 * SIZE, 0] == pytest.approx(0.3)
  assert picture[SIZE, 0, 0] == pytest.approx(0.5) and picture[-1, 0, 0] == 0.0


def test_report_lists_albedo_rmse():
  result = {"count": 2, "albedo_count": 2,
            "coarse": {"l1": 0.1, "psnr": 20.0, "ssim": 0.5, "albedo_rmse": 0.2,
                       "albedo_si_rmse": 0.1},
            "refined": {"l1": 0.05, "psnr": 25.0, "ssim": 0.6, "albedo_rmse": 0.1,
                        "albedo_si_rmse": 0.12}}
  text = evaluate.format_report(result)
  assert "albedo_rmse" in text and "-50.0%" in text
  assert "albedo_si_rmse" in text and "+20.0%" in text
  for stage in ("coarse", "refined"):
    del result[stage]["albedo_rmse"], result[stage]["albedo_si_rmse"]
  assert "no ground-truth albedo" in evaluate.format_report(result)


def test_record_stem_used_for_pictures():
  assert infer.record_stem("id7/000#2", 0) == "id7_000_2"
