"""Paired in-process comparison (stdlib only: it runs on the device, and the controller
pools with the same functions).

One process holds the reference (fp32) and the variant, and alternates blocks of k
inferences between them, each round in the order ABBA or BAAB drawn at random; the first
inference of a block is discarded. Whatever slows the process (the host taking the CPU
for seconds, a slow process, thermal drift) slows the neighbouring blocks of both alike,
so the statistic is per variant block: the log of its median over the mean log median of
its nearest reference blocks before and after. Those log-ratios are summarised by their
20 % trimmed mean with a 95 % interval (Tukey–McLaughlin, as `harness.stats`), and the
run goes on until the interval lies outside the equivalence band (faster / slower), inside
it (equivalent), or the time budget ends (inconclusive, with the interval reached).

Looks at the data come at geometric block counts (12, 18, 27, ...), not after every
block, so the repeated 95 % intervals stay close to their nominal level.
"""

from __future__ import annotations

import math
import random
import time
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # on the device this module runs without its package
    from .contract import Block, Decision, PairedDoc, PairedSpec

CONFIDENCE = 0.95  # the one level of every interval and test of the harness
TRIM = 0.2
MIN_BLOCKS = 12  # variant blocks before the first look
LOOK_GROWTH = 1.5
MAX_BLOCKS = 4000
# Student's t, two-sided 95 %, by degrees of freedom (1..30); beyond, the normal with its
# Cornish-Fisher corrections (within 0.01 % of the true quantile from 30 on)
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
Z_975 = 1.959963984540054


def t_975(freedom: int) -> float:
    if freedom < 1:
        return math.inf
    if freedom <= len(T_975):
        return T_975[freedom - 1]
    z = Z_975
    return z + (z**3 + z) / (4 * freedom) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * freedom**2)


def trimmed_mean_ci(values: Sequence[float], trim: float = TRIM) -> tuple[float, float]:
    """(20 % trimmed mean, half-width of its 95 % interval): the winsorized variance scaled
    as Yuen's test scales it, h = n - 2g values kept, h - 1 degrees of freedom."""
    ordered = sorted(values)
    n = len(ordered)
    if n < 2:
        return (ordered[0] if ordered else 0.0), math.inf
    cut = int(math.floor(trim * n))
    kept = ordered[cut : n - cut]
    mean = sum(kept) / len(kept)
    low, high = ordered[cut], ordered[n - cut - 1]
    winsorized = [min(max(v, low), high) for v in ordered]
    average = sum(winsorized) / n
    variance = sum((v - average) ** 2 for v in winsorized) / (n - 1)
    h = n - 2 * cut
    if h < 2:
        return mean, math.inf
    error = math.sqrt((n - 1) * variance / (h * (h - 1)))
    return mean, t_975(h - 1) * error


def block_medians(blocks: Sequence[Block]) -> list[tuple[str, float]]:
    out = []
    for block in blocks:
        ordered = sorted(block["ns"])
        mid = len(ordered) // 2
        median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0
        out.append((str(block["v"]), float(median)))
    return out


def block_log_ratios(blocks: Sequence[Block]) -> list[float]:
    """Per variant block: log(its median) - the mean log median of the nearest reference
    block before it and after it (one of them at the ends of a process)."""
    medians = block_medians(blocks)
    ratios = []
    for index, (tag, value) in enumerate(medians):
        if tag != "variant" or value <= 0:
            continue
        neighbours = []
        for step in (-1, 1):
            j = index + step
            while 0 <= j < len(medians) and medians[j][0] != "ref":
                j += step
            if 0 <= j < len(medians) and medians[j][1] > 0:
                neighbours.append(math.log(medians[j][1]))
        if neighbours:
            ratios.append(math.log(value) - sum(neighbours) / len(neighbours))
    return ratios


def decide(log_ratios: Sequence[float], band: float) -> Decision:
    """The verdict on variant/reference latency from the blocks' log-ratios: `slower` or
    `faster` when the 95 % interval lies beyond the band (±band, e.g. 0.02), `equivalent`
    when it lies inside it, else `inconclusive`. Ratios are variant / reference latency."""
    if len(log_ratios) < 2:
        return {"verdict": "inconclusive", "blocks": len(log_ratios), "ratio": None,
                "ratio_low": None, "ratio_high": None}  # fmt: skip
    mean, half = trimmed_mean_ci(log_ratios)
    edge = math.log1p(band)
    low, high = mean - half, mean + half
    if low > edge:
        verdict = "slower"
    elif high < -edge:
        verdict = "faster"
    elif -edge < low and high < edge:
        verdict = "equivalent"
    else:
        verdict = "inconclusive"
    return {
        "verdict": verdict,
        "blocks": len(log_ratios),
        "ratio": math.exp(mean),
        "ratio_low": math.exp(low) if math.isfinite(low) else None,
        "ratio_high": math.exp(high) if math.isfinite(high) else None,
    }


def block_size(
    reference: Callable[[], object], variant: Callable[[], object], block_ms: float
) -> int:
    """Inferences per block so that a block lasts about `block_ms` for the slower side."""
    clock = time.perf_counter_ns
    slowest = 1
    for infer in (reference, variant):
        times = []
        for _ in range(3):
            start = clock()
            infer()
            times.append(clock() - start)
        slowest = max(slowest, sorted(times)[1])
    return max(3, min(1000, int(math.ceil(block_ms * 1e6 / slowest))))


def run_paired(
    reference: Callable[[], object],
    variant: Callable[[], object],
    spec: PairedSpec,
    seed: int,
) -> PairedDoc:
    """Blocks in rounds of ABBA / BAAB until decided or out of time (`spec`: budget_s,
    band, block_ms or block_size)."""
    clock = time.perf_counter_ns
    rng = random.Random(seed)
    size = int(spec.get("block_size") or 0) or block_size(
        reference, variant, float(spec.get("block_ms", 20.0))
    )
    band = float(spec["band"])
    deadline = time.monotonic() + float(spec["budget_s"])
    sides = {"ref": reference, "variant": variant}
    blocks: list[Block] = []
    looks: list[Decision] = []
    next_look, stopped = MIN_BLOCKS, "budget"
    started = time.monotonic()
    while True:
        order = ["ref", "variant", "variant", "ref"]
        if rng.random() < 0.5:
            order.reverse()
        for tag in order:
            infer = sides[tag]
            infer()  # the block's first inference: discarded (caches of the other side)
            timings = []
            for _ in range(size):
                start = clock()
                infer()
                timings.append(clock() - start)
            blocks.append({"v": tag, "ns": timings})
        variant_blocks = len(blocks) // 2
        if variant_blocks >= next_look:
            decision = decide(block_log_ratios(blocks), band)
            looks.append(decision)
            next_look = int(math.ceil(next_look * LOOK_GROWTH))
            if decision["verdict"] != "inconclusive":
                stopped = "decided"
                break
            low = decision["ratio_low"]
            if "stop_above" in spec and low is not None and low > float(spec["stop_above"]):
                stopped = "behind"  # surely slower than the best so far: not worth more
                break
        if time.monotonic() >= deadline:
            break
        if variant_blocks >= MAX_BLOCKS:
            stopped = "max_blocks"
            break
    return {
        "block_size": size,
        "band": band,
        "blocks": blocks,
        "looks": looks,
        "stopped": stopped,
        "decision": decide(block_log_ratios(blocks), band),
        "elapsed_s": time.monotonic() - started,
    }
