#!/usr/bin/env python
"""A GPU proxy for the `paper` preset's network: torchvision's ResNet-50 training step.

    python bench/gpu_resnet_proxy.py [--batches 6 24 96] [--steps 20] [--repeats 5]

Not our code and not part of the toolkit: it needs PyTorch, torchvision and a
CUDA GPU, which the toolkit does not.  It was written for a lent GPU machine
that had PyTorch but no TensorFlow (docs/mgc.md, "Session 16"), to bound the
network's share of a `paper` training step there: forward, backward and Adam
on random 224-px images (ResNet-50 with a 257-output head, about the
coefficient vector's length), in fp32, TF32 and bf16 autocast, channels-last.
Median over `--repeats` timings of `--steps` steps each, after 15 warm-up
steps.  A table, then one JSON line.
"""

import argparse
import json
import time

OUTPUTS = 257
WARMUP_STEPS = 15
MODES = ("fp32", "tf32", "bf16")


def time_step(torch, torchvision, batch, mode, steps, repeats):
  """Median, min and max ms per training step of one batch size and precision."""
  torch.backends.cuda.matmul.allow_tf32 = mode != "fp32"
  torch.backends.cudnn.allow_tf32 = mode != "fp32"
  net = torchvision.models.resnet50(weights=None, num_classes=OUTPUTS)
  net = net.cuda().to(memory_format=torch.channels_last)
  optimizer = torch.optim.Adam(net.parameters(), 1e-4)
  images = torch.rand(batch, 3, 224, 224, device="cuda").to(memory_format=torch.channels_last)
  target = torch.rand(batch, OUTPUTS, device="cuda")

  def step():
    with torch.autocast("cuda", torch.bfloat16, enabled=mode == "bf16"):
      loss = ((net(images).float() - target) ** 2).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()

  for _ in range(WARMUP_STEPS):
    step()
  torch.cuda.synchronize()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      step()
    torch.cuda.synchronize()
    times.append((time.perf_counter() - start) / steps * 1e3)
  times.sort()
  return times[len(times) // 2], times[0], times[-1]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batches", type=int, nargs="+", default=[6, 24, 96])
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args(argv)
  import torch
  import torchvision
  torch.backends.cudnn.benchmark = True
  device = torch.cuda.get_device_name(0)
  rows = []
  print(f"{device}, torch {torch.__version__}")
  print(f"{'images':>6} {'mode':>5} {'ms median':>10} {'min':>7} {'max':>7} {'images/s':>9}")
  for batch in args.batches:
    for mode in MODES:
      median, low, high = time_step(torch, torchvision, batch, mode, args.steps, args.repeats)
      rows.append({"batch": batch, "mode": mode, "ms_median": round(median, 2),
                   "ms_min": round(low, 2), "ms_max": round(high, 2),
                   "images_per_s": round(batch / median * 1e3, 1)})
      print(f"{batch:>6} {mode:>5} {median:>10.2f} {low:>7.2f} {high:>7.2f} "
            f"{batch / median * 1e3:>9.1f}")
  print(json.dumps({"device": device, "torch": torch.__version__, "rows": rows}))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
