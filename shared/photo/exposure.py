"""An exposure-equalised copy of a photo, for finding faces in badly exposed ones.

BlazeFace finds nothing in a strongly over- or under-exposed photo even when a
person sees the face at once: scikit-image's astronaut scaled by 2.2 (more
than half of her face's pixels at 255) or by 0.02 gives no detection, where
the same photos after equalising the luminance histogram give her face at
scores 0.87-0.89.  `shared.photo.landmarks` runs the detector and the mesh on
this copy only when the photo itself gave no face (docs/photos.md, "Badly
exposed photos"); the geometry found there is used on the original photo.
"""

import cv2
import numpy as np


def equalise_luminance(image_rgb):
  """The photo with its luminance histogram equalised, colours kept.

  The L channel of CIE L*a*b* is spread over the whole 8-bit range
  (`cv2.equalizeHist`); a* and b* are left as they are.

  Args:
    image_rgb: `uint8 [H, W, 3]` RGB.

  Returns:
    `uint8 [H, W, 3]` RGB, same size.
  """
  lab = cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2LAB)
  lab[..., 0] = cv2.equalizeHist(np.ascontiguousarray(lab[..., 0]))
  return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
