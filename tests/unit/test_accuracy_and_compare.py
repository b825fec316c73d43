from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.accuracy import eval_metrics, output_deviation, top_k_agreement
from harness.analysis import compare_variants


def test_accuracy_from_top_k_predictions() -> None:
    predictions = [[3, 1, 2, 0, 4], [1, 3, 0, 2, 4], [2, 0, 1, 3, 4], [0, 9, 8, 7, 6]]
    labels = np.array([3, 3, 2, 5])
    metrics = eval_metrics(predictions, labels)
    assert metrics == {"eval_n": 4, "accuracy": 0.5, "top5_accuracy": 0.75}
    assert eval_metrics([], labels)["accuracy"] is None


def test_agreement_and_deviation() -> None:
    assert top_k_agreement([[1], [2], [3], [4]], [[1], [2], [0], [4]], 1) == 0.75
    assert top_k_agreement([], [[1]], 1) is None
    # fp32's top-1 (the reference's first) within the variant's top 5
    mine, reference = [[4, 1, 2, 3, 0], [9, 8, 7, 6, 5]], [[1, 0], [0, 1]]
    assert top_k_agreement(mine, reference, 1) == 0.0
    assert top_k_agreement(mine, reference, 5) == 0.5
    assert output_deviation([[1.0, 2.0], [3.0, 4.0]], [[1.5, 2.0], [3.0, 3.0]]) == (1.0, 0.375)
    assert output_deviation(None, [[1.0]]) == (None, None)
    assert output_deviation([[1.0, 2.0]], [[1.0]]) == (None, None)  # shapes differ


def frame(rows: list[dict]) -> pd.DataFrame:
    base = {"device": "pi", "model": "m", "runtime": "onnxruntime", "provider": "CPU", "threads": 1,
            "status": "ok", "peak_rss_mb": 100.0, "top1_agreement": np.nan}  # fmt: skip
    return pd.DataFrame([{**base, **row} for row in rows])


def variant(name: str, p50: float, size: int, accuracy: float | None, ci: float = 0.01) -> dict:
    return {"variant": name, "strategy": name, "p50_ms": p50, "p50_ci_low_ms": p50 * (1 - ci),
            "p50_ci_high_ms": p50 * (1 + ci), "model_bytes": size,
            "accuracy": np.nan if accuracy is None else accuracy}  # fmt: skip


def test_speedup_size_accuracy_and_pareto() -> None:
    results = frame(
        [
            variant("fp32", 10.0, 1000, 0.97),
            variant("int8", 5.0, 250, 0.96),
            variant("fp16", 12.0, 500, 0.97),  # slower: said plainly
            variant("pruned", 6.0, 800, 0.90),  # dominated by int8
            {**variant("broken", 1.0, 10, 0.1), "status": "error"},
        ]
    )
    table = compare_variants(results).set_index("variant")
    assert "broken" not in table.index
    assert table.loc["int8", "speedup"] == pytest.approx(2.0)
    assert table.loc["int8", "speedup_low"] == pytest.approx(10 * 0.99 / (5 * 1.01))
    assert table.loc["int8", "size_ratio"] == 0.25
    assert table.loc["int8", "accuracy_delta"] == pytest.approx(-0.01)
    assert "SLOWER than fp32" in table.loc["fp16", "notes"]
    assert "accuracy -7.0 pts" in table.loc["pruned", "notes"]
    # fp16: slower, but as accurate as fp32 at half the size -- a trade-off, not dominated
    assert table["pareto"].to_dict() == {"fp32": True, "int8": True, "fp16": True, "pruned": False}
    assert table["fidelity_loss_pct"].to_dict() == pytest.approx(
        {"fp32": 0.0, "int8": 1.0, "fp16": 0.0, "pruned": 7.0}
    )
    assert table.loc["int8", "fidelity_measure"] == "accuracy drop (pts)"
    # speed x fidelity: int8 (2x, -1 pt) and fp32 (1x, 0) are the front; fp16 is slower
    assert table["front"].to_dict() == {"fp32": True, "int8": True, "fp16": False, "pruned": False}


def test_without_a_quality_measure_a_variant_is_never_pareto_and_no_fp32_is_said() -> None:
    """Neither labels nor a fidelity pass: its quality is unknown, so the Pareto front
    (computed among verified variants) leaves it out, however small it is."""
    results = frame([variant("fp32", 10.0, 1000, None), variant("small", 11.0, 100, None)])
    table = compare_variants(results).set_index("variant")
    assert table["pareto"].to_dict() == {"fp32": True, "small": False}
    assert pd.isna(table.loc["small", "quality"])
    alone = compare_variants(frame([variant("int8", 5.0, 250, None)]))
    assert alone.loc[0, "notes"] == "no fp32 result to compare with"


def test_a_speedup_inside_process_to_process_noise_is_not_a_result() -> None:
    results = frame(
        [
            {**variant("fp32", 10.0, 1000, None), "process_p50_spread": 0.30},
            {**variant("sparse", 8.0, 1000, None), "process_p50_spread": 0.05},
            {**variant("int8", 4.0, 250, None), "process_p50_spread": 0.05},
        ]
    )
    table = compare_variants(results).set_index("variant")
    assert table.loc["sparse", "speedup"] == pytest.approx(1.25)
    assert not table.loc["sparse", "significant"]
    assert "within process-to-process noise (±30%)" in table.loc["sparse", "notes"]
    assert table.loc["int8", "significant"] and table.loc["int8", "notes"] == ""
    assert table.loc["fp32", "significant"] is None
