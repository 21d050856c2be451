"""Adaptive Po2 rounding for post-training quantisation (label-free, calibration images only).

Why: rounding every BN-folded weight to its nearest power of two makes errors of up to a
factor sqrt(2) per weight; they compound through the layers (a MobileNetV2-style digits
network falls from 99 % to 15 %). Choosing, per weight, between its two neighbouring levels so
that the *layer output* stays close to the float one recovers almost all of it.

What (AdaRound on the Po2 grid, solved on second-order statistics):

* Conv layers are visited in network order. Each sees its input from the network whose
  earlier convs are already rounded (``x_q``) and, for the target, from the float network
  (``x_f``); activations stay float here (their formats are calibrated afterwards on the
  rounded network, see :func:`hashiflex.frontend.quant.quantize_ptq`).
* Every weight ``w`` may take ``sign(w) * (lo + h * (hi - lo))`` where ``lo < |w| <= hi`` are
  its neighbouring levels of the channel's grid (``2^exp_base .. 2^emax`` and zero; ``emax`` and
  ``exp_base`` as nearest rounding fixes them, so every choice stays representable), and
  ``h = clip(sigmoid(V) * 1.2 - 0.1, 0, 1)`` is a relaxed 0/1 choice. Adam minimises the
  pre-activation output error plus a regulariser ``lambda * sum(1 - |2h - 1|^beta)`` whose
  ``beta`` anneals from 20 to 2, pushing every ``h`` to 0 or 1; then ``h`` is rounded.
* The output error of output channel ``o`` with the best bias is a quadratic form in the
  per-patch covariances of the inputs: ``E[(x_q.w_q + b_q - x_f.w_f - b_f)^2]`` minimised over
  ``b_q`` is ``w_q' Cqq w_q - 2 w_q' Cqf w_f + w_f' Cff w_f`` (``C`` centred over every output
  pixel of every calibration image), and the bias is then ``b_f + mean(x_f).w_f -
  mean(x_q).w_q``, which also corrects the mean error that rounding leaves. A step therefore
  costs ``O * K^2`` multiply-adds per group (``K = I/groups * KH * KW``), independent of the
  number of calibration pixels, which keeps MobileNetV2 w1.0 fast.

The solver only changes the float weights and biases of the fake-quant model to exact Po2
values (a fixed point of nearest rounding), so everything downstream -- export, integer
semantics, checkpoints -- is unchanged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

PTQ_METHODS = ("adaround", "nearest")

# AdaRound's rectified sigmoid stretch and annealing (Nagel et al. 2020, their defaults)
_ZETA, _GAMMA = 1.1, -0.1
_BETA_START, _BETA_END = 20.0, 2.0
_WARMUP = 0.2


@dataclass(frozen=True)
class AdaRoundOptions:
    """Solver knobs; the defaults are the ones measured in docs/accuracy.md."""

    steps: int = 300
    lr: float = 0.2
    reg: float = 0.01
    # a layer whose step would cost more than this many multiply-adds (O * K^2 summed over
    # groups) gets proportionally fewer steps, at least min_steps: bounds the time on
    # MobileNetV2 w1.0's wide 1x1 layers
    step_budget: float = 2.0e7
    min_steps: int = 20
    # the covariances use at most this many output pixels (a seeded random subset): their
    # cost is 3 * K^2 per pixel and group, and 8192 pixels estimate them well
    max_pixels: int = 8192


def _pow2(e: torch.Tensor) -> torch.Tensor:
    return torch.ldexp(torch.ones_like(e, dtype=torch.float64), e.to(torch.float64))


def po2_neighbours(weight: torch.Tensor, exp_base: torch.Tensor, exp_bits: int,
                   mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lo, hi, sign) of every weight: |w| lies in [lo, hi] of the channel's Po2 grid.

    The grid of channel o is {0} and 2^e for e in [exp_base[o], exp_base[o] + 2^exp_bits - 1];
    magnitudes above the top level clamp to it (lo = hi), pruned weights are lo = hi = 0.
    """
    w = weight.detach().to(torch.float64)
    shape = [-1] + [1] * (w.dim() - 1)
    base = exp_base.reshape(shape).to(torch.float64)
    top = base + (1 << exp_bits) - 1
    mag = w.abs()
    safe = torch.where(mag > 0, mag, torch.ones_like(mag))
    e_floor = torch.floor(torch.log2(safe))
    # log2 of an exact power of two is exact; guard the floor against rounding below it
    e_floor = torch.where(torch.ldexp(torch.ones_like(safe), e_floor + 1) <= safe, e_floor + 1,
                          e_floor)
    below = e_floor < base  # between 0 and the smallest level
    lo = torch.where(below, torch.zeros_like(mag), torch.ldexp(torch.ones_like(mag), torch.minimum(e_floor, top)))
    hi = torch.where(below, torch.ldexp(torch.ones_like(mag), base.expand_as(mag)),
                     torch.ldexp(torch.ones_like(mag), torch.minimum(e_floor + 1, top)))
    hi = torch.where(e_floor >= top, lo, hi)
    hi = torch.where(mag == lo, lo, hi)  # already on the grid
    dead = mag == 0
    if mask is not None:
        dead = dead | (mask == 0)
    lo = torch.where(dead, torch.zeros_like(lo), lo)
    hi = torch.where(dead, torch.zeros_like(hi), hi)
    return lo, hi, torch.sign(w)


class _Moments:
    """Running sums over patches for the centred covariances Cqq, Cqf (and Cff)."""

    def __init__(self, groups: int, k: int):
        z = lambda *s: torch.zeros(*s, dtype=torch.float64)  # noqa: E731
        self.count = 0
        self.sum_q, self.sum_f = z(groups, k), z(groups, k)
        self.qq, self.qf, self.ff = z(groups, k, k), z(groups, k, k), z(groups, k, k)

    def add(self, pq: torch.Tensor, pf: torch.Tensor) -> None:
        """pq, pf: [G, K, P] patches (summed in float64)."""
        pq, pf = pq.to(torch.float64), pf.to(torch.float64)
        self.count += pq.shape[-1]
        self.sum_q += pq.sum(-1)
        self.sum_f += pf.sum(-1)
        self.qq += pq @ pq.transpose(1, 2)
        self.qf += pq @ pf.transpose(1, 2)
        self.ff += pf @ pf.transpose(1, 2)

    def finish(self):
        n = max(self.count, 1)
        mq, mf = self.sum_q / n, self.sum_f / n
        cqq = self.qq / n - mq[:, :, None] * mq[:, None, :]
        cqf = self.qf / n - mq[:, :, None] * mf[:, None, :]
        cff = self.ff / n - mf[:, :, None] * mf[:, None, :]
        return mq, mf, cqq, cqf, cff


def _patches(x: torch.Tensor, op) -> torch.Tensor:
    """The conv's input patches as [G, K, P] (K = I/groups * KH * KW, P = N * OH * OW)."""
    top, left, bottom, right = op.padding
    x = F.pad(x, (left, right, top, bottom)) if any(op.padding) else x
    o, cin_g, kh, kw = op.weight.shape
    cols = F.unfold(x, (kh, kw), stride=op.stride)  # [N, C*KH*KW, L], channel-major
    n, _, l = cols.shape
    cols = cols.reshape(n, op.groups, cin_g * kh * kw, l).permute(1, 2, 0, 3)
    return cols.reshape(op.groups, cin_g * kh * kw, n * l)


def conv_moments(op, xq: torch.Tensor, xf: torch.Tensor, max_pixels: int, chunk: int = 16):
    """Patch statistics of one conv over the calibration batch (in image chunks).

    With more than `max_pixels` output pixels in all, each chunk contributes a seeded random
    subset of its pixels in proportion.
    """
    o, cin_g, kh, kw = op.weight.shape
    moments = _Moments(op.groups, cin_g * kh * kw)
    total = xq.shape[0] * op.shape[1] * op.shape[2]
    keep = min(1.0, max_pixels / max(total, 1))
    gen = torch.Generator().manual_seed(0)
    for s in range(0, xq.shape[0], chunk):
        pq, pf = _patches(xq[s:s + chunk], op), _patches(xf[s:s + chunk], op)
        if keep < 1.0:
            idx = torch.randperm(pq.shape[-1], generator=gen)[:max(1, int(pq.shape[-1] * keep))]
            pq, pf = pq[..., idx], pf[..., idx]
        moments.add(pq, pf)
    return moments.finish()


def _rect_sigmoid(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA, 0.0, 1.0)


def _solve(v, free, sign, lo, span, cqq, target, scale: float, steps: int,
           options: AdaRoundOptions) -> torch.Tensor:
    """Adam on the rounding variables v, with the gradient written out.

    Autograd and torch.optim cost about 5 ms a step in overhead on these small tensors;
    the closed-form gradient of the quadratic error and an inline Adam make a step a handful
    of tensor operations.
    """
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    m, s2 = torch.zeros_like(v), torch.zeros_like(v)
    warm = int(steps * _WARMUP)
    stretch = _ZETA - _GAMMA
    freef = free.float()
    for step in range(1, steps + 1):
        sig = torch.sigmoid(v)
        soft = sig * stretch + _GAMMA
        h = soft.clamp(0.0, 1.0)
        w_q = sign * (lo + h * span)
        # d recon / d w_q = 2 scale (Cqq w_q - Cqf w_f)
        grad_h = 2 * scale * (w_q @ cqq - target) * sign * span
        if step > warm:
            t = (step - warm) / max(steps - warm, 1)
            beta = _BETA_END + 0.5 * (_BETA_START - _BETA_END) * (1 + math.cos(math.pi * t))
            d = 2 * h - 1
            # d/dh of 1 - |2h - 1|^beta
            grad_h = grad_h - options.reg * beta * d.abs().clamp_min(1e-12).pow(beta - 1) \
                * torch.sign(d) * 2
        inside = ((soft > 0) & (soft < 1)).float() * freef
        grad = grad_h * inside * stretch * sig * (1 - sig)
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        s2.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m_hat = m / (1 - beta1 ** step)
        s_hat = s2 / (1 - beta2 ** step)
        v = v - options.lr * m_hat / (s_hat.sqrt() + eps)
    return v


def adaround_conv(op, xq: torch.Tensor, xf: torch.Tensor, exp_base: torch.Tensor,
                  options: AdaRoundOptions) -> dict:
    """Choose the Po2 rounding of one conv's weights and its corrected bias (in place).

    Returns statistics: steps, seconds, relative output error before (nearest) and after.
    """
    start = time.perf_counter()
    o, cin_g, kh, kw = op.weight.shape
    g, og, k = op.groups, o // op.groups, cin_g * kh * kw
    mq, mf, cqq, cqf, cff = conv_moments(op, xq, xf, options.max_pixels)
    mask = op.prune_mask
    w_f = (op.weight.detach() * (mask if mask is not None else 1)).to(torch.float64)
    lo, hi, sign = po2_neighbours(w_f, exp_base, op.exp_bits, mask)
    w_f = w_f.reshape(g, og, k)
    lo, hi, sign = (t.reshape(g, og, k) for t in (lo, hi, sign))
    target = w_f @ cqf.transpose(1, 2)  # [G, Og, K]: Cfq w_f per output channel
    var_f = ((w_f @ cff) * w_f).sum(-1)  # [G, Og]: variance of the float output
    scale = 1.0 / max(float(var_f.mean()), 1e-30)

    def error(w_q: torch.Tensor) -> torch.Tensor:  # [G, Og]
        return ((w_q @ cqq) * w_q).sum(-1) - 2 * (w_q * target).sum(-1) + var_f

    free = hi > lo
    frac = torch.where(free, (w_f.abs() - lo) / torch.where(free, hi - lo, 1), 0).clamp(0.01, 0.99)
    # invert the rectified sigmoid so that the soft weight starts at the float weight
    v0 = -torch.log((_ZETA - _GAMMA) / (frac - _GAMMA) - 1)
    v = torch.where(free, v0, 0).float()
    nearest = sign * torch.where(w_f.abs() >= lo * math.sqrt(2), hi, lo)
    nearest = torch.where(lo > 0, nearest, sign * torch.where(w_f.abs() >= hi / 2, hi, lo))
    err_nearest = float(error(nearest).sum() * scale)

    cost = g * og * k * k
    steps = options.steps if cost <= options.step_budget else max(
        options.min_steps, int(options.steps * options.step_budget / cost))
    v = _solve(v.detach(), free, sign.float(), lo.float(), (hi - lo).float(), cqq.float(),
               target.float(), scale, steps, options)
    with torch.no_grad():
        h = (_rect_sigmoid(v).double() >= 0.5).double()
        w_q = sign * (lo + h * (hi - lo))
        err_after = float(error(w_q).sum() * scale)
        bias_f = op.bias.detach().to(torch.float64).reshape(g, og)
        bias_q = bias_f + (w_f * mf[:, None, :]).sum(-1) - (w_q * mq[:, None, :]).sum(-1)
        op.weight.copy_(w_q.reshape(op.weight.shape))
        op.bias.copy_(bias_q.reshape(-1))
    return dict(layer=op.op_name, weights=o * k, steps=steps,
                seconds=time.perf_counter() - start,
                error_nearest=err_nearest, error_adaround=err_after)


def adaround(fq, calib: torch.Tensor, options: AdaRoundOptions | None = None,
             log: Callable[[str], None] | None = None) -> list[dict]:
    """Round every conv of a float-mode fake-quant model adaptively, in network order.

    ``fq`` is an uncalibrated :class:`~hashiflex.frontend.quant.Po2FakeQuantModel` (float
    mode); on return its conv weights are exact Po2 values and its biases corrected.
    """
    options = options or AdaRoundOptions()
    # one torch thread: the solver runs thousands of small tensor ops per layer, where a
    # second thread only adds synchronisation; on the shared 2-core machine MobileNetV2 w1.0
    # took 148 s with the default two threads and 35 s with one (benchmarks/bench_import.py).
    # It also makes the chosen rounding independent of the machine's core count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _adaround(fq, calib, options, log)
    finally:
        torch.set_num_threads(threads)


def _adaround(fq, calib: torch.Tensor, options: AdaRoundOptions,
              log: Callable[[str], None] | None) -> list[dict]:
    from hashiflex.frontend.quant import FqConv2d, po2_weight_codes

    fq.set_quantize(False).eval()
    last_use: dict[str, int] = {}
    for i, op in enumerate(fq.ops):
        for name in op.inputs:
            last_use[name] = i
    env_q: dict[str, torch.Tensor] = {}
    env_f: dict[str, torch.Tensor] = {}
    stats = []
    x = calib.float()
    with torch.no_grad():
        for i, op in enumerate(fq.ops):
            args_q = [env_q[n] for n in op.inputs] if op.inputs else [x]
            args_f = [env_f[n] for n in op.inputs] if op.inputs else [x]
            if isinstance(op, FqConv2d):
                y_f = op(*args_f)
                _, exp_base = po2_weight_codes(op.weight, op.exp_bits, op.prune_mask)
                with torch.enable_grad():
                    stats.append(adaround_conv(op, args_q[0], args_f[0], exp_base, options))
                if log:
                    s = stats[-1]
                    log(f"adaround {s['layer']}: {s['weights']} weights, {s['steps']} steps, "
                        f"output error {s['error_nearest']:.4f} (nearest) -> "
                        f"{s['error_adaround']:.4f}, {s['seconds']:.2f} s")
                y_q = op(*args_q)
            else:
                y_f, y_q = op(*args_f), op(*args_q)
            env_f[op.op_name], env_q[op.op_name] = y_f, y_q
            for name in op.inputs:
                if last_use.get(name) == i:
                    env_f.pop(name, None)
                    env_q.pop(name, None)
    return stats
