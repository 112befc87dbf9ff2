"""A video's faces over time as one picture: `<stem>_tracks.png`.

Two panels over the video's time in seconds, one line style per face track: the head pose
(yaw, pitch and roll in degrees, in the photo's frame) and the mouth's opening in
millimetres (the distance between the inner lips' middle points, 68-point landmarks 62 and
66, in 3D, so the head's turn does not change it).  Drawn from the arrays of
`<stem>_tracks.npz` (`PhotoReconstructor.tracks_arrays`).
"""

from pathlib import Path

import numpy as np

from shared.io.fileio import atomic_path

MOUTH_POINTS = (62, 66)      # inner upper and lower lip, middle (300-W order)
MAX_TRACKS = 6               # the longest tracks drawn; the others are left out
MOUTH_AXIS_MM = 10.0         # the mouth panel spans at least 0 to this, so that a shut
                             # mouth's sub-millimetre wobble does not look like speech
FIGURE_INCHES = (9.0, 5.5)
DPI = 100
POSE_COLOURS = {"yaw": "tab:blue", "pitch": "tab:orange", "roll": "tab:green"}
TRACK_STYLES = ("-", "--", ":", "-.")


def mouth_opening_mm(landmarks3d, mm_per_unit):
  """`[N]` the inner lips' opening in millimetres of `landmarks3d` `[N, 68, 3]` (model
  units)."""
  upper, lower = MOUTH_POINTS
  return np.linalg.norm(landmarks3d[:, upper] - landmarks3d[:, lower], axis=-1) * mm_per_unit


def plot_tracks(path, arrays, mm_per_unit, title=""):
  """Writes the picture of a video's face tracks to `path` (PNG, atomic).

  Args:
    path: the `.png` to write.
    arrays: a `<stem>_tracks.npz`'s arrays: `frame [N]`, `track [N]`, `fps`,
      `pose_degrees [N, 3]` (yaw, pitch, roll), `landmarks3d [N, 68, 3]`, and optionally
      `person [N]` (named in the legend).
    mm_per_unit: millimetres per model unit of the face model.
    title: the picture's title (e.g. the video's name).
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  seconds = np.asarray(arrays["frame"], np.float64) / float(arrays["fps"])
  track = np.asarray(arrays["track"])
  ids, counts = np.unique(track, return_counts=True)
  shown = ids[np.argsort(-counts, kind="stable")][:MAX_TRACKS]
  mouth = mouth_opening_mm(np.asarray(arrays["landmarks3d"], np.float64), mm_per_unit)
  figure, (pose_axis, mouth_axis) = plt.subplots(2, 1, figsize=FIGURE_INCHES, sharex=True,
                                                  gridspec_kw={"height_ratios": (3, 2)})
  for n, tid in enumerate(sorted(shown)):
    rows = track == tid
    style = TRACK_STYLES[n % len(TRACK_STYLES)]
    name = f"face {tid}" if len(shown) > 1 else ""
    if name and "person" in arrays:
      name = f"person {int(np.asarray(arrays['person'])[rows][0])}, {name}"
    for k, (angle, colour) in enumerate(POSE_COLOURS.items()):
      pose_axis.plot(seconds[rows], arrays["pose_degrees"][rows, k], style, color=colour,
                     lw=1.3, label=f"{angle} {name}".strip())
    mouth_axis.plot(seconds[rows], mouth[rows], style, color="tab:red", lw=1.3,
                    label=name or None)
  pose_axis.set_ylabel("head pose (degrees)")
  pose_axis.axhline(0.0, color="grey", lw=0.5)
  pose_axis.legend(fontsize=7, ncol=3 if len(shown) > 1 else 1, loc="upper right")
  mouth_axis.set_ylabel("mouth opening (mm)")
  mouth_axis.set_ylim(0.0, max(MOUTH_AXIS_MM, 1.1 * float(np.max(mouth[np.isin(track, shown)]))))
  mouth_axis.set_xlabel("time (s)")
  if len(shown) > 1:
    mouth_axis.legend(fontsize=7, loc="upper right")
  left_out = len(ids) - len(shown)
  pose_axis.set_title(title + (f" ({left_out} shorter track(s) not drawn)" if left_out else ""),
                      fontsize=10)
  figure.tight_layout()
  with atomic_path(Path(path)) as tmp:
    figure.savefig(tmp, dpi=DPI, format="png")
  plt.close(figure)
