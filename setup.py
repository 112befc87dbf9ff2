"""Installs the face reconstruction toolkit (packages shared, mgc_face, gcn_face).

The tensorflow-graphics rasterizer kernel is compiled on first use (or by
`python -m shared.render.rasterizer`) and cached per TensorFlow version.  The
default face model (ICT-FaceKit light, MIT) ships as package data.
"""

from pathlib import Path

from setuptools import find_packages, setup

TEST_ONLY = ("pytest", "hypothesis")   # In requirements.txt, not needed to run the toolkit.


def read_requirements(name):
  return [line.split("#")[0].strip()
          for line in Path(__file__).with_name(name).read_text().splitlines()
          if line.split("#")[0].strip() and not line.startswith(TEST_ONLY)]


# tensorflow-graphics (requirements-no-deps.txt) pulls tensorflow-addons, which has no wheels
# for Python 3.12+: there `pip install .` leaves it out, and `make install` (or
# `pip install --no-deps -r requirements-no-deps.txt`) installs it without its dependencies.
requirements = read_requirements("requirements.txt") + [
    f'{line}; python_version < "3.12"' for line in read_requirements("requirements-no-deps.txt")]

setup(
    name="face3d-tf2",
    version="0.1.0",
    description="TF2 monocular 3D face reconstruction: MGCNet and 3D-Face-GCNs on "
                "tensorflow-graphics",
    packages=find_packages(include=["shared", "shared.*", "mgc_face", "mgc_face.*",
                                    "gcn_face", "gcn_face.*"]),
    # Our interpolation op's C++ source, compiled with tfg's kernel on first use; the
    # embedded default face model (ICT-FaceKit light, MIT) with its licence; the
    # 468-point -> ICT vertex correspondence (shared/fit/dense.py); MediaPipe's face-mesh
    # model (Apache 2.0) with its licence (shared/photo/face_mesh.py).
    package_data={"shared": ["render/kernels/*.cc", "assets/ict_face_light/*.npz",
                             "assets/ict_face_light/LICENSE-ICT-FaceKit",
                             "assets/ict_face_light/*.md", "correspondence/*.npz",
                             "assets/mediapipe_face_mesh/*.tflite",
                             "assets/mediapipe_face_mesh/LICENSE-MediaPipe",
                             "assets/mediapipe_face_mesh/*.md"]},
    python_requires=">=3.11",
    install_requires=requirements,
)
