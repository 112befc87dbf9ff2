"""Installs the face reconstruction toolkit (packages shared, mgc_face, gcn_face).

The tensorflow-graphics rasterizer kernel is compiled on first use (or by
`python -m shared.rasterizer`) and cached per TensorFlow version.
"""

from pathlib import Path

from setuptools import find_packages, setup

requirements = [line.split("#")[0].strip()
                for line in Path(__file__).with_name("requirements.txt").read_text().splitlines()
                if line.split("#")[0].strip() and not line.startswith("pytest")]

setup(
    name="face3d-tf2",
    version="0.1.0",
    description="TF2 monocular 3D face reconstruction: MGCNet and 3D-Face-GCNs on "
                "tensorflow-graphics",
    packages=find_packages(include=["shared", "shared.*", "mgc_face", "mgc_face.*",
                                    "gcn_face", "gcn_face.*"]),
    # Our interpolation op's C++ source, compiled with tfg's kernel on first use; the
    # 468-point -> ICT vertex correspondence (shared/dense_fit.py).
    package_data={"shared": ["kernels/*.cc", "correspondence/*.npz"]},
    python_requires=">=3.10",
    install_requires=requirements,
)
