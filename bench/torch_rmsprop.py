#!/usr/bin/env python3
"""PyTorch's RMSprop on the benchmark's workloads: the yardstick for webgpu-rmsprop on a real GPU.

Times, per workload and variant, torch.optim.RMSprop with foreach=True (eager, multi-tensor
kernels), the same step under torch.compile where this PyTorch has it, fused=True where this
PyTorch's RMSprop has it, and a plain device copy (dst.copy_(src)) of the largest workload, and
prints ms per step and effective GB/s by the same bytes model as `npm run bench`: a plain step
moves 20 bytes per parameter (read p, g, v; write p, v), centered +8 (m), momentum +8 (b).

Workloads: one tensor of 16Mi elements, the small transformer (42 tensors, 4,198,656 params: per
layer q, k, v, o 256x256, two layer norms' gain and bias, fc1 256x1024, fc2 1024x256, times 4
layers, plus a 4096x256 embedding and a final gain), and one tensor of 64Mi elements.

Usage:
  python3 bench/torch_rmsprop.py                 # CUDA if available, else CPU
  python3 bench/torch_rmsprop.py --device cpu --smoke   # tiny shapes: checks the script runs
  python3 bench/torch_rmsprop.py --json out.json
Timing: CUDA events around K steps (after warm-up), median of batches; on CPU, perf_counter.
"""
import argparse
import inspect
import json
import statistics
import sys
import time

import torch

HYPER = dict(lr=1e-3, alpha=0.9, eps=1e-7)  # the same numbers as the WebGPU benchmark (presets.tfjs)
VARIANTS = [
    ("plain", dict(momentum=0.0, centered=False)),
    ("momentum 0.9 + centered", dict(momentum=0.9, centered=True)),
]


def bytes_per_param(momentum, centered):
    return 20 + (8 if centered else 0) + (8 if momentum > 0 else 0)


def transformer(layers=4, d=256, ff=1024, vocab=4096):
    shapes = []
    for _ in range(layers):
        shapes += [(d, d)] * 4 + [(d,)] * 4 + [(d, ff), (ff, d)]
    shapes += [(vocab, d), (d,)]
    return shapes


def workloads(smoke):
    if smoke:
        return [("1 tensor of 1001", [(1001,)]), ("transformer (1 layer, d 8)", transformer(1, 8, 16, 32))]
    return [
        ("1 tensor of 16Mi", [(16 * 2**20,)]),
        ("transformer, 42 tensors, 4.2M", transformer()),
        ("1 tensor of 64Mi", [(64 * 2**20,)]),
    ]


class Timer:
    """Times `run(k)`: CUDA events on a GPU, the wall clock on a CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def time(self, run, k):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run(k)
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        t = time.perf_counter()
        run(k)
        return (time.perf_counter() - t) * 1e3


def measure(timer, run, batches, target_ms, max_k=1000):
    """Median ms per step over `batches` batches of k steps, k chosen so a batch takes ~target_ms."""
    run(1)
    timer.time(run, 1)  # warm-up (torch.compile compiles on the first calls)
    est = max(timer.time(run, 1), 1e-3)
    k = max(1, min(max_k, round(target_ms / est)))
    per_step = [timer.time(run, k) / k for _ in range(batches)]
    return dict(ms=statistics.median(per_step), min_ms=min(per_step), max_ms=max(per_step), k=k, batches=batches)


def step_runner(shapes, device, variant, mode):
    """A closure running k optimizer steps on fixed gradients; None when `mode` is unavailable."""
    gen = torch.Generator(device="cpu").manual_seed(1234)
    params = []
    for shape in shapes:
        p = torch.nn.Parameter((torch.rand(shape, generator=gen) - 0.5).mul_(0.2).to(device))
        p.grad = ((torch.rand(shape, generator=gen) - 0.5).mul_(0.02).add_(0.01)).to(device)
        params.append(p)
    kwargs = dict(HYPER, **variant)
    signature = inspect.signature(torch.optim.RMSprop.__init__).parameters
    if mode == "fused":
        if "fused" not in signature:
            return None, f"torch {torch.__version__}: RMSprop has no fused option"
        kwargs["fused"] = True
    else:
        kwargs["foreach"] = True
    try:
        optimizer = torch.optim.RMSprop(params, **kwargs)
    except (RuntimeError, ValueError, TypeError) as e:
        return None, f"{mode}: {e}"
    step = optimizer.step
    if mode == "compiled":
        if not hasattr(torch, "compile"):
            return None, f"torch {torch.__version__} has no torch.compile"
        step = torch.compile(optimizer.step)

    def run(k):
        for _ in range(k):
            step()

    try:
        run(1)
    except Exception as e:  # a compile failure (no Triton, no C compiler) is reported, not fatal
        return None, f"{mode}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return run, None


def copy_runner(elements, device):
    src = torch.rand(elements, device=device)
    dst = torch.empty_like(src)

    def run(k):
        for _ in range(k):
            dst.copy_(src)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one short batch: checks the script runs")
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--target-ms", type=float, default=200.0, help="aim for batches this long")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    batches, target = (2, 5.0) if args.smoke else (args.batches, args.target_ms)
    timer = Timer(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"PyTorch {torch.__version__} on {name}; timing: {'CUDA events' if timer.cuda else 'wall clock'}; "
          f"median of {batches} batches after warm-up")

    sets = workloads(args.smoke)
    largest = max(sum(torch.Size(s).numel() for s in shapes) for _, shapes in sets)
    copy = measure(timer, copy_runner(largest, device), batches, target)
    copy_gbps = 8 * largest / (copy["ms"] * 1e6)
    print(f"device copy (dst.copy_(src), {largest} floats, read+write): {copy['ms']:.3f} ms, {copy_gbps:.1f} GB/s\n")

    header = f"{'workload':32} {'variant':24} {'mode':9} {'ms/step':>9} {'GB/s':>8} {'% copy':>7}"
    print(header)
    print("-" * len(header))
    rows = []
    for set_name, shapes in sets:
        n = sum(torch.Size(s).numel() for s in shapes)
        for variant_name, variant in VARIANTS:
            moved = bytes_per_param(variant["momentum"], variant["centered"]) * n
            for mode in ("foreach", "compiled", "fused"):
                run, why = step_runner(shapes, device, variant, mode)
                if run is None:
                    print(f"{set_name:32} {variant_name:24} {mode:9} {'n/a':>9}  ({why})")
                    rows.append(dict(workload=set_name, params=n, variant=variant_name, mode=mode, skipped=why))
                    continue
                m = measure(timer, run, batches, target)
                gbps = moved / (m["ms"] * 1e6)
                print(f"{set_name:32} {variant_name:24} {mode:9} {m['ms']:9.3f} {gbps:8.1f} {100 * gbps / copy_gbps:6.0f}%")
                rows.append(dict(workload=set_name, params=n, variant=variant_name, mode=mode, bytes_per_step=moved, gb_per_s=gbps, **m))
                del run
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(torch=torch.__version__, device=name, copy=dict(copy, gb_per_s=copy_gbps, elements=largest), rows=rows), f, indent=2)
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
