"""A user-supplied face-embedding network (FaceNet-like), frozen.

Both papers compare identity features of the input and of the render
(MGCNet's identity loss, the GCN paper's perception loss and its decoder
input).  No embedding weights ship with this toolkit and nothing is
downloaded: the user passes a model file, and the losses that need it are
off otherwise.

    embed = FaceEmbedder("facenet_savedmodel/")     # or "facenet.keras"
    features = embed(images)                        # [B, H, W, 3] in [0, 1] -> [B, D]

Accepted files:

* a TensorFlow SavedModel folder: its `serving_default` signature (one image
  input, the first output is used), or the loaded object itself if callable;
* a Keras `.keras` / `.h5` file.

Images are resized to the model's static input size (from its signature or
Keras input) or, when it has none, to `size`, then standardised as FaceNet
expects, (x * 255 - 127.5) / 128.
"""

from pathlib import Path

import tensorflow as tf

from shared.errors import InputError

FACENET_SIZE = 160          # FaceNet's input crop.
FACENET_CENTRE = 127.5      # FaceNet input: (x * 255 - 127.5) / 128.
FACENET_SCALE = 128.0
UINT8_MAX = 255.0
NUM_RGB = 3
MAX_MESSAGE = 200


def facenet_standardise(images):
  """[..., 3] in [0, 1] -> FaceNet's input range, (x * 255 - 127.5) / 128."""
  return (images * UINT8_MAX - FACENET_CENTRE) / FACENET_SCALE


def _static_size(shape):
  """(H, W) from an NHWC shape when both are known, else None."""
  dims = list(shape)
  if len(dims) != 4 or dims[1] is None or dims[2] is None:
    return None
  return int(dims[1]), int(dims[2])


class FaceEmbedder:
  """images [B, H, W, 3] in [0, 1] -> embeddings [B, D] (float32); frozen.

  Args:
    path: SavedModel folder or `.keras` / `.h5` file.
    size: input size used when the model does not fix one (FaceNet: 160).

  Raises:
    InputError (one line) when the file is missing, cannot be loaded, or the
    model does not return one vector per image.
  """

  def __init__(self, path, size=FACENET_SIZE):
    self.path = Path(path)
    if not self.path.exists():
      raise InputError(f"{self.path}: embedding model not found")
    try:
      self._fn, model_size = self._load()
    except InputError:
      raise
    except Exception as error:  # noqa: BLE001 - any load failure is a bad file.
      raise InputError(f"{self.path}: cannot load the embedding model ({type(error).__name__}: "
                       f"{str(error).splitlines()[0][:MAX_MESSAGE] if str(error) else ''})"
                       ) from None
    self.size = model_size or (int(size), int(size))
    probe = self(tf.zeros([1, self.size[0], self.size[1], NUM_RGB]))
    if probe.shape.rank != 2:
      raise InputError(f"{self.path}: the embedding model returns shape {probe.shape}, "
                       "expected [batch, D]")
    self.output_size = int(probe.shape[-1])

  def _load(self):
    """-> (callable on standardised images, static (H, W) or None)."""
    if not self.path.is_dir():
      import keras
      model = keras.models.load_model(str(self.path), compile=False)
      model.trainable = False
      return model, _static_size(model.input_shape)
    self._loaded = tf.saved_model.load(str(self.path))  # Keeps the variables alive.
    signature = getattr(self._loaded, "signatures", {}).get("serving_default")
    if signature is not None:
      specs = list(signature.structured_input_signature[1].values())
      if len(specs) != 1:
        raise InputError(f"{self.path}: serving_default takes {len(specs)} inputs, expected one "
                         "image batch")
      return signature, _static_size(specs[0].shape)
    if callable(self._loaded):
      return self._loaded, None
    raise InputError(f"{self.path}: SavedModel has no serving_default signature and is not "
                     "callable")

  def __call__(self, images):
    x = facenet_standardise(tf.image.resize(images, self.size))
    out = self._fn(x)
    if isinstance(out, dict):  # A SavedModel signature returns a dict.
      out = next(iter(out.values()))
    return tf.cast(tf.convert_to_tensor(out), tf.float32)
