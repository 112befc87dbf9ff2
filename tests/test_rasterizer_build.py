"""The kernel build: cached, safe with concurrent builders, falls back to
portable flags, clear without a compiler or when every flag set fails."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
  sys.path.insert(0, str(ROOT))

from shared.errors import InputError  # noqa: E402
from shared.io.paths import CACHE_DIR_ENV  # noqa: E402
from shared.render import rasterizer  # noqa: E402

def _env(cache, **extra):
  env = dict(os.environ, FACE3D_CACHE_DIR=str(cache), TF_CPP_MIN_LOG_LEVEL="2")
  env.update(extra)
  return env


def _build_error(monkeypatch, cache, compiler):
  """The InputError `library_path()` raises with `compiler` and an empty cache (in this process:
  the build reads its settings from the environment at each call)."""
  monkeypatch.setenv(CACHE_DIR_ENV, str(cache))
  monkeypatch.setenv(rasterizer.COMPILER_ENV, compiler)
  with pytest.raises(InputError) as raised:
    rasterizer.library_path()
  return str(raised.value)


def test_missing_compiler_is_one_clear_line(tmp_path, monkeypatch):
  message = _build_error(monkeypatch, tmp_path, "no-such-g++")
  assert len(message.splitlines()) == 1 and "no C++ compiler 'no-such-g++' found" in message


def render_sphere(out_file):
  """Renders a shaded icosphere through shared.render.renderer into `out_file` (.npz: image,
  depth, ids); returns (those arrays, the loaded kernel's build.json)."""
  import tensorflow as tf
  import trimesh
  from shared.model.camera import Camera
  from shared.render import renderer as render
  sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.5)
  vertices = tf.constant(np.asarray(sphere.vertices, np.float32)[None])
  colour = tf.constant(np.abs(np.asarray(sphere.vertex_normals, np.float32))[None])
  out = render.render(vertices, np.asarray(sphere.faces, np.int32), colour,
                      Camera(focal=300.0, image_size=96, distance=10.0))
  np.savez(out_file, image=out.image.numpy(), depth=out.depth.numpy(),
           ids=out.triangle_ids.numpy())
  return np.load(out_file), rasterizer.build_info(rasterizer.library_path())


def test_two_processes_build_once_with_the_fallback_flags_and_render_the_same_image(tmp_path):
  """Two fresh processes share a fresh cache in which an impossible flag makes the first flag
  set fail: exactly one builds (the other waits for it), with the next set, and both render the
  same image as the normal build (the user's cache, built at install) does in this process.
  One test for both properties: each fresh process costs a TensorFlow import (10-20 s on a slow
  2-core machine)."""
  normal, normal_info = render_sphere(tmp_path / "normal.npz")
  env = _env(tmp_path / "cache", FACE3D_KERNEL_FAST_EXTRA_FLAGS="-mno-such-flag")
  procs = [subprocess.Popen([sys.executable, __file__, "render", str(tmp_path / f"{k}.npz")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for k in range(2)]
  outs = [p.communicate(timeout=900) for p in procs]
  assert all(p.returncode == 0 for p in procs), [err[-3000:] for _, err in outs]
  infos = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
  assert infos[0] == infos[1]  # The same library's build.json.
  libs = list((tmp_path / "cache").rglob("*.so"))
  assert [p.name for p in libs] == ["rasterizer_op.so"]  # No stray temporary files.
  builds = sum("building the tensorflow-graphics CPU kernel" in err for _, err in outs)
  assert builds == 1
  forced_info = infos[0]
  assert forced_info["flag_set"] != "fast"
  assert forced_info["failed"][0]["flag_set"] == "fast"
  assert "-mno-such-flag" in forced_info["failed"][0]["error"]
  assert normal_info["flag_set"] in {"fast", forced_info["flag_set"]}
  assert list((tmp_path / "cache").rglob("build.json"))
  assert (normal["ids"] >= 0).sum() > 1000  # The sphere covers many pixels.
  for k in range(2):
    forced = np.load(tmp_path / f"{k}.npz")
    np.testing.assert_array_equal(forced["ids"], normal["ids"])
    np.testing.assert_allclose(forced["depth"], normal["depth"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(forced["image"], normal["image"], rtol=0, atol=1e-5)


FAKE_COMPILER = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "fakec++ 1.0"; exit 0; fi
echo "x.h:1:2: warning: something harmless" >&2
echo "x.h:3:4: error: the real problem" >&2
echo "x.h:5:6: error: a consequence" >&2
echo "compilation terminated." >&2
exit 1
"""


def test_every_flag_set_failing_shows_the_first_error_line(tmp_path, monkeypatch):
  fake = tmp_path / "fakec++"
  fake.write_text(FAKE_COMPILER)
  fake.chmod(0o755)
  message = _build_error(monkeypatch, tmp_path / "cache", str(fake))
  assert len(message.splitlines()) == 1, message
  assert "x.h:3:4: error: the real problem" in message
  tried = ", ".join(name for name, _ in rasterizer.flag_sets())  # No fast set on AVX512-FP16.
  assert tried in {"fast, fast-no-avx512fp16, portable", "fast-no-avx512fp16, portable"}
  assert tried in message
  assert not list(tmp_path.rglob("*.so"))


def test_fast_set_left_out_on_avx512_fp16_cpus(monkeypatch):
  monkeypatch.delenv(rasterizer.FAST_EXTRA_FLAGS_ENV, raising=False)
  monkeypatch.setattr(rasterizer, "_cpu_signature", lambda: "flags\t: sse avx512f avx512_fp16")
  assert [name for name, _ in rasterizer.flag_sets()] == ["fast-no-avx512fp16", "portable"]
  monkeypatch.setattr(rasterizer, "_cpu_signature", lambda: "flags\t: sse avx512f avx512_bf16")
  assert [name for name, _ in rasterizer.flag_sets()] == ["fast", "fast-no-avx512fp16", "portable"]
  monkeypatch.setattr(rasterizer, "_cpu_signature", lambda: "flags\t: sse avx512_fp16")
  monkeypatch.setenv(rasterizer.FAST_EXTRA_FLAGS_ENV, "-mavx512fp16")
  sets = rasterizer.flag_sets()
  assert sets[0] == ("fast", rasterizer.FLAG_SETS[0][1] + ("-mavx512fp16",))


def test_cpu_model_reads_the_model_name_line(monkeypatch):
  monkeypatch.setattr(rasterizer, "_cpu_signature",
                      lambda: "flags\t: sse avx2\nmodel name\t: AMD EPYC 9654 96-Core Processor")
  assert rasterizer.cpu_model() == "AMD EPYC 9654 96-Core Processor"
  monkeypatch.setattr(rasterizer, "_cpu_signature", lambda: "aarch64")   # No /proc/cpuinfo.
  assert rasterizer.cpu_model() == "unknown"


def test_cache_key_is_the_same_for_tensorflow_in_another_folder():
  import tensorflow as tf
  folder = tf.sysconfig.get_lib()
  flags = [f"-I{folder}/include", f"-L{folder}", "-l:libtensorflow_framework.so.2"]
  moved = [flag.replace(folder, "/elsewhere/venv/tensorflow") for flag in flags]

  class Moved:  # The same TensorFlow installed in another virtual environment.
    __version__ = tf.__version__
    sysconfig = type("sysconfig", (), {"get_lib": staticmethod(
        lambda: "/elsewhere/venv/tensorflow")})

  kernel_dir = rasterizer._kernel_dir()
  sets = rasterizer.flag_sets()
  assert (rasterizer._build_key(tf, kernel_dir, flags, "g++ 12", sets)
          == rasterizer._build_key(Moved, kernel_dir, moved, "g++ 12", sets))
  assert (rasterizer._build_key(tf, kernel_dir, flags, "g++ 12", sets)
          != rasterizer._build_key(tf, kernel_dir, flags + ["-DOTHER"], "g++ 12", sets))


if __name__ == "__main__":  # `python test_rasterizer_build.py render OUT.npz` (the fallback test).
  _, info = render_sphere(sys.argv[2])
  print(json.dumps(info))
