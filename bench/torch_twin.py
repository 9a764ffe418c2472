#!/usr/bin/env python3
"""PyTorch twin of two brainmclip models, for timing ours against PyTorch on the same device.

What it is: the real-size generator (`GeneratorConfig::real_size()`, src/model/generator/) and
the NSD-size projector (bench/real_size.rs, src/model/projector.rs) rebuilt module by module in
torch.nn with the same shapes, the same parameter counts (asserted) and random weights, timed the
way bench/decoders.rs times ours: projector forward for one sample (batch 1, as in the live loop)
with both outputs read back to the host; a 4-step DDIM image at 256x256, batch 1, guidance 1 (one
network evaluation per step), the image read back to the host. Warm-up runs first, then median
and p95 over --runs.

What it is not: a port of our weights or a numerical check (weights are random and differ from
ours; the time does not depend on them), nor a training benchmark. It has no dependency but torch.

Usage: python3 bench/torch_twin.py [--device cuda|cpu] [--tf32] [--runs N] [--json OUT]
Precision: without --tf32, matmuls AND convolutions are strict f32 (PyTorch's default lets cuDNN
convolutions use TF32; we switch that off). Note that burn's CUDA backend (cubek-matmul /
cubek-convolution 0.2) stages f32 operands as TF32 whenever it picks a tensor-core kernel, so
the like-for-like comparison with ours is usually the --tf32 run.
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- the configs (copied from src/model/generator/mod.rs and bench/real_size.rs) ----
GEN = dict(image_size=256, unshuffle=2, channels=[128, 256, 384, 512], blocks=2, attention=True,
           groups=32, token_width=1024, token_grid=16, semantic_dim=768, embed_dim=512)
PROJ = dict(detail_voxels=15_000, semantic_voxels=3_000, embed_dim=1024, blocks=2,
            detail_tokens=257, detail_width=1024, token_rank=16, semantic_dim=768)
# What our decoders bench prints for GeneratorConfig::real_size() (`big.num_params()`,
# bench/results/gpu-h200-run*/decoders.txt). The projector's count is only printed by the CPU
# part of that bench, so for it we assert against the hand formula below.
OURS_GENERATOR_PARAMS = 68_843_404


# ---- parameter counts by hand, from the configs (burn: Linear/Conv2d with bias, GroupNorm and
# LayerNorm with weight + bias; GroupNorm groups = min(groups, channels)) ----
def conv_n(i, o, k): return i * o * k * k + o
def lin_n(i, o): return i * o + o
def norm_n(c): return 2 * c


def resblock_n(i, o, e):
    return norm_n(i) + conv_n(i, o, 3) + lin_n(e, 2 * o) + norm_n(o) + conv_n(o, o, 3) + \
        (conv_n(i, o, 1) if i != o else 0)


def generator_formula(c):
    ch, e, n, tw = c["channels"], c["embed_dim"], c["blocks"], c["token_width"]
    px = 3 * c["unshuffle"] ** 2
    level = lambda i, o: sum(resblock_n(i if k == 0 else o, o, e) for k in range(n)) + conv_n(tw, i, 1)
    total = conv_n(px, ch[0], 3) + 2 * lin_n(e, e) + norm_n(c["semantic_dim"]) \
        + lin_n(c["semantic_dim"], e) + norm_n(tw)
    total += sum(level(ch[0] if l == 0 else ch[l - 1], ch[l]) for l in range(len(ch)))
    total += sum(conv_n(ch[l - 1], ch[l - 1], 3) for l in range(1, len(ch)))   # downsample
    b = ch[-1]
    total += 2 * resblock_n(b, b, e)
    if c["attention"]:
        total += norm_n(b) + conv_n(b, 3 * b, 1) + conv_n(b, b, 1)
    total += sum(level((b if l + 1 == len(ch) else ch[l + 1]) + ch[l], ch[l]) for l in range(len(ch)))
    total += sum(conv_n(ch[l], ch[l], 3) for l in range(1, len(ch)))          # upsample
    return total + norm_n(ch[0]) + conv_n(ch[0], px, 3)


def projector_formula(c):
    e = c["embed_dim"]
    enc = lambda v: lin_n(v, e) + c["blocks"] * (norm_n(e) + lin_n(e, e))
    t, w, r = c["detail_tokens"], c["detail_width"], c["token_rank"]
    return enc(c["detail_voxels"]) + enc(c["semantic_voxels"]) \
        + lin_n(e, r * w) + t * r + t * w \
        + lin_n(e, c["semantic_dim"]) + lin_n(e, c["detail_voxels"]) + lin_n(e, c["semantic_voxels"])


# ---- the generator: src/model/generator/unet.rs ----
def gnorm(groups, c):
    return nn.GroupNorm(min(groups, c), c, eps=1e-5)   # burn's GroupNorm default eps


def conv(i, o, k, stride=1):
    return nn.Conv2d(i, o, k, stride=stride, padding=k // 2)   # burn: Explicit(k/2) padding


class ResBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv; second norm scaled/shifted by Linear(SiLU(emb)); 1x1 skip."""

    def __init__(self, i, o, e, groups):
        super().__init__()
        self.norm1, self.conv1 = gnorm(groups, i), conv(i, o, 3)
        self.modulation = nn.Linear(e, 2 * o)
        self.norm2, self.conv2 = gnorm(groups, o), conv(o, o, 3)
        self.skip = conv(i, o, 1) if i != o else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.modulation(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (scale + 1.0) + shift))
        return (self.skip(x) if self.skip is not None else x) + h


class SelfAttention(nn.Module):
    """GroupNorm, 1x1 qkv conv, 4-head softmax attention over the h*w positions, 1x1 out conv."""

    def __init__(self, c, groups, heads):
        super().__init__()
        self.norm, self.qkv, self.out, self.heads = gnorm(groups, c), conv(c, 3 * c, 1), conv(c, c, 1), heads

    def forward(self, x):
        b, c, h, w = x.shape
        # Ours slices q, k, v as channel blocks [0:c], [c:2c], [2c:3c] and splits each into heads
        # as contiguous channel groups: [b, heads, d, hw] then transposed to [b, heads, hw, d].
        q, k, v = (t.reshape(b, self.heads, c // self.heads, h * w).transpose(2, 3)
                   for t in self.qkv(self.norm(x)).chunk(3, dim=1))
        y = F.scaled_dot_product_attention(q, k, v)   # scale 1/sqrt(d), as burn's default
        return x + self.out(y.transpose(2, 3).reshape(b, c, h, w))


class Level(nn.Module):
    def __init__(self, i, o, n, e, groups, token_width):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(i if k == 0 else o, o, e, groups) for k in range(n))
        self.tokens = conv(token_width, i, 1)   # token grid -> this level's input channels


def bilinear_matrix(n_in, n_out, device):
    """Rows of the [out, in] resampling matrix, align_corners=False (unet::bilinear_weights)."""
    m = torch.zeros(n_out, n_in)
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1, frac = min(i0 + 1, n_in - 1), src - i0
        m[i, i0] += 1.0 - frac
        m[i, i1] += frac
    return m.to(device)


class UNet(nn.Module):
    def __init__(self, c, resize="interpolate"):
        super().__init__()
        ch, e, g, tw, n = c["channels"], c["embed_dim"], c["groups"], c["token_width"], c["blocks"]
        px, b = 3 * c["unshuffle"] ** 2, ch[-1]
        self.unshuffle, self.grid, self.embed_dim, self.resize = c["unshuffle"], c["token_grid"], e, resize
        self.input = conv(px, ch[0], 3)
        self.time1, self.time2 = nn.Linear(e, e), nn.Linear(e, e)
        self.semantic_norm, self.semantic = nn.LayerNorm(c["semantic_dim"]), nn.Linear(c["semantic_dim"], e)
        self.token_norm = nn.LayerNorm(tw)
        self.down = nn.ModuleList(Level(ch[0] if l == 0 else ch[l - 1], ch[l], n, e, g, tw) for l in range(len(ch)))
        self.downsample = nn.ModuleList(conv(ch[l - 1], ch[l - 1], 3, stride=2) for l in range(1, len(ch)))
        self.middle1 = ResBlock(b, b, e, g)
        self.middle_attention = SelfAttention(b, g, min(4, b)) if c["attention"] else None
        self.middle2 = ResBlock(b, b, e, g)
        # Up levels, bottom first, take [h, skip] concatenated: (channels below + own) in.
        self.up = nn.ModuleList(Level((b if l + 1 == len(ch) else ch[l + 1]) + ch[l], ch[l], n, e, g, tw)
                                for l in reversed(range(len(ch))))
        # Nearest x2 then a 3x3 conv on the channels coming up (ours: `upsample[k - 1]`).
        self.upsample = nn.ModuleList(conv(ch[l], ch[l], 3) for l in reversed(range(1, len(ch))))
        self.out_norm, self.output = gnorm(g, ch[0]), conv(ch[0], px, 3)
        self._mats = {}
        # Sinusoid frequencies, as timestep_embedding (times 1000: t is in 0..1).
        half = e // 2
        self.register_buffer("freqs", torch.exp(-math.log(10_000.0) * torch.arange(half) / half) * 1000.0,
                             persistent=False)

    def resize_to(self, x, size):
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        if self.resize == "interpolate":   # what a PyTorch user writes; same values as ours
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        # "matrix": ours exactly (two matmuls, unet::resize_bilinear), to separate kernel choice
        # from framework overhead.
        b, c, h, w = x.shape
        key = (h, w, *size)
        if key not in self._mats:
            self._mats[key] = (bilinear_matrix(w, size[1], x.device).t().contiguous(),
                               bilinear_matrix(h, size[0], x.device).t().contiguous())
        mw, mh = self._mats[key]
        y = (x.reshape(b * c * h, w) @ mw).reshape(b * c, h, size[1]).transpose(1, 2)
        y = y.reshape(-1, h) @ mh
        return y.reshape(b * c, size[1], size[0]).transpose(1, 2).reshape(b, c, *size)

    def inject(self, level, h, tmap):
        return h + self.resize_to(level.tokens(tmap), h.shape[-2:])

    def forward(self, x, t, tokens, semantic):
        args = t[:, None] * self.freqs[None]
        temb = torch.cat([args.cos(), args.sin()], dim=1)
        emb = self.time2(F.silu(self.time1(temb))) + self.semantic(self.semantic_norm(semantic))
        b, nt, w = tokens.shape
        g = self.grid
        # Class token dropped, patch grid as a [b, width, g, g] map (after the LayerNorm).
        tmap = self.token_norm(tokens)[:, nt - g * g:].transpose(1, 2).reshape(b, w, g, g)
        h = self.input(F.pixel_unshuffle(x, self.unshuffle))
        skips = []
        for l, level in enumerate(self.down):
            h = self.inject(level, h, tmap)
            for blk in level.blocks:
                h = blk(h, emb)
            skips.append(h)
            if l < len(self.downsample):
                h = self.downsample[l](h)
        h = self.middle1(h, emb)
        if self.middle_attention is not None:
            h = self.middle_attention(h)
        h = self.middle2(h, emb)
        for k, level in enumerate(self.up):
            skip = skips.pop()
            if h.shape[-2] != skip.shape[-2]:
                h = self.upsample[k - 1](F.interpolate(h, size=skip.shape[-2:], mode="nearest"))
            h = self.inject(level, torch.cat([h, skip], dim=1), tmap)
            for blk in level.blocks:
                h = blk(h, emb)
        return F.pixel_shuffle(self.output(F.silu(self.out_norm(h))), self.unshuffle)


# ---- the sampler: src/model/generator/schedule.rs (cosine schedule, v-prediction, DDIM) ----
def alpha_sigma(t, offset=0.008):
    f = lambda t: math.cos((t + offset) / (1.0 + offset) * math.pi / 2)
    a = min(max(f(min(max(t, 0.0), 1.0)) / f(0.0), 0.0), 1.0)
    return a, math.sqrt(max(1.0 - a * a, 0.0))


def sample(model, tokens, semantic, size, steps=4, guidance=1.0, seed=1, time_power=8.0, start=1.0):
    b, dev = semantic.shape[0], semantic.device
    # Ours draws the noise on the host (seeded ChaCha8) and uploads it: so do we.
    x = torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(dev)
    times = [start * (1.0 - i / steps) ** time_power for i in range(steps + 1)]
    null = (torch.zeros_like(tokens), torch.zeros_like(semantic)) if guidance != 1.0 else None
    for i in range(steps):
        t, tn = times[i], times[i + 1]
        tt = torch.full((b,), t, device=dev)
        v = model(x, tt, tokens, semantic)
        if null is not None:   # ours runs the unconditional branch as a second batch-b pass
            vn = model(x, tt, *null)
            v = vn + (v - vn) * guidance
        a, s = alpha_sigma(t)
        x0 = (x * a - v * s).clamp(-1.0, 1.0)
        eps = x * s + v * a
        an, sn = alpha_sigma(tn)
        x = x0 if i + 1 == steps else x0 * an + eps * sn
    return x


# ---- the projector: src/model/projector.rs (dropout 0 at inference: omitted) ----
class StreamEncoder(nn.Module):
    def __init__(self, inputs, width, blocks):
        super().__init__()
        self.input = nn.Linear(inputs, width)
        self.blocks = nn.ModuleList(nn.ModuleDict(dict(norm=nn.LayerNorm(width), linear=nn.Linear(width, width)))
                                    for _ in range(blocks))

    def forward(self, v):
        x = self.input(v)
        for blk in self.blocks:   # x + GELU(Linear(LayerNorm(x))), exact (erf) GELU as burn's
            x = x + F.gelu(blk["linear"](blk["norm"](x)))
        return x


class TokenHead(nn.Module):
    """tokens[t, c] = sum_r mix[t, r] * basis_r(b)[c] + bias[t, c]."""

    def __init__(self, e, t, c, r):
        super().__init__()
        self.rank, self.width = r, c
        self.basis = nn.Linear(e, r * c)
        self.mix = nn.Parameter(torch.randn(t, r) / math.sqrt(r))
        self.bias = nn.Parameter(torch.zeros(t, c))

    def forward(self, b):
        return torch.matmul(self.mix, self.basis(b).reshape(b.shape[0], self.rank, self.width)) + self.bias


class Projector(nn.Module):
    def __init__(self, c):
        super().__init__()
        e = c["embed_dim"]
        self.detail_encoder = StreamEncoder(c["detail_voxels"], e, c["blocks"])
        self.semantic_encoder = StreamEncoder(c["semantic_voxels"], e, c["blocks"])
        self.detail_head = TokenHead(e, c["detail_tokens"], c["detail_width"], c["token_rank"])
        self.semantic_head = nn.Linear(e, c["semantic_dim"])
        # Not on the live path (cross-reconstruction in training), but counted.
        self.detail_decoder = nn.Linear(e, c["detail_voxels"])
        self.semantic_decoder = nn.Linear(e, c["semantic_voxels"])

    def forward(self, detail, semantic):
        return self.detail_head(self.detail_encoder(detail)), self.semantic_head(self.semantic_encoder(semantic))


# ---- timing ----
def set_tf32(on):
    # Both matmul (cuBLAS) and convolution (cuDNN): PyTorch's own default is matmul off, cuDNN on.
    mm, cd = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(mm, "fp32_precision") and hasattr(getattr(cd, "conv", None), "fp32_precision"):
        mm.fp32_precision = cd.conv.fp32_precision = "tf32" if on else "ieee"   # torch >= 2.9
    else:
        mm.allow_tf32 = cd.allow_tf32 = on


def ramp(shape, device):
    """bench/decoders.rs's deterministic, non-constant input: ((i * 7919) % 1000) / 500 - 1."""
    n = math.prod(shape)
    return (((torch.arange(n, dtype=torch.float64) * 7919) % 1000) / 500.0 - 1.0).float().reshape(shape).to(device)


def timed(fn, runs, warmup, device):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):   # cuDNN autotuning, allocator warm-up (ours: one warm-up trial)
        fn()
    sync()
    ms = []
    for _ in range(runs):
        sync()
        t0 = time.perf_counter()
        fn()   # ends in a host copy (.cpu()), which waits for the device as ours does
        sync()
        ms.append((time.perf_counter() - t0) * 1e3)
    s = sorted(ms)
    return dict(median_ms=statistics.median(ms), p95_ms=s[round((len(s) - 1) * 0.95)], runs_ms=ms)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    p.add_argument("--tf32", action="store_true", help="allow TF32 in matmuls and convolutions")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=4, help="sampler steps (4 = ours; 1 for a quick CPU check)")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0],
                   help="guidance scales to time (ours: 1 in real_size; decoders also times 2)")
    p.add_argument("--resize", default="interpolate", choices=["interpolate", "matrix"],
                   help="token-map resize: F.interpolate, or ours' two matmuls")
    p.add_argument("--json", help="write the figures here")
    a = p.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("torch sees no CUDA device")
        set_tf32(a.tf32)
        torch.backends.cudnn.benchmark = True   # autotuned kernels, as burn's CUDA backend autotunes
    torch.manual_seed(0)

    gen = UNet(GEN, a.resize).to(device).eval()
    proj = Projector(PROJ).to(device).eval()
    n_gen = sum(q.numel() for q in gen.parameters())
    n_proj = sum(q.numel() for q in proj.parameters())
    assert generator_formula(GEN) == OURS_GENERATOR_PARAMS, generator_formula(GEN)
    assert n_gen == OURS_GENERATOR_PARAMS, f"twin generator has {n_gen}, ours {OURS_GENERATOR_PARAMS}"
    assert n_proj == projector_formula(PROJ), f"twin projector has {n_proj}, formula {projector_formula(PROJ)}"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"torch {torch.__version__} on {name}; tf32 {'on' if a.tf32 else 'off'}; resize {a.resize}")
    print(f"generator (real size, 256x256, ViT-L/14 conditioning): {n_gen} parameters (ours {OURS_GENERATOR_PARAMS})")
    print(f"projector (NSD size, 15000/3000 voxels, 257x1024 + 768): {n_proj} parameters (formula {projector_formula(PROJ)})")

    result = dict(torch=torch.__version__, device=name, tf32=a.tf32, resize=a.resize, runs=a.runs,
                  warmup=a.warmup, generator_params=n_gen, projector_params=n_proj, generator={})
    with torch.inference_mode():
        d, s = ramp([1, PROJ["detail_voxels"]], device), ramp([1, PROJ["semantic_voxels"]], device)

        def project():
            tok, sem = proj(d, s)
            return tok.cpu(), sem.cpu()

        r = timed(project, a.runs, a.warmup, device)
        result["projector"] = r
        print(f"projector, one sample: median {r['median_ms']:.2f} ms, p95 {r['p95_ms']:.2f} ms")
        tokens = ramp([1, PROJ["detail_tokens"], GEN["token_width"]], device)
        semantic = ramp([1, GEN["semantic_dim"]], device)
        for g in a.guidance:
            r = timed(lambda: sample(gen, tokens, semantic, GEN["image_size"], a.steps, g).cpu(),
                      a.runs, a.warmup, device)
            result["generator"][f"steps{a.steps}_guidance{g:g}"] = r
            print(f"generator, {a.steps} steps, guidance {g:g}, batch 1, 256x256: "
                  f"median {r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
