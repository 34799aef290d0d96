import torch

import kdiqa
from kdiqa.profiling import count_macs, count_params, measure_latency


def test_count_macs_hand_computed():
    # conv 3→8, 3x3, stride 1, pad 1 on 10x10: 8*3*9 MACs per output pixel, 100 pixels; linear 8→2: 16 MACs.
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 2),
    )
    assert count_macs(net, size=10) == 8 * 3 * 9 * 100 + 16
    assert count_macs(net, size=10, batch=3) == 3 * (8 * 3 * 9 * 100 + 16)
    assert count_macs(net, size=(10, 20)) == 8 * 3 * 9 * 200 + 16
    assert count_params(net) == 8 * 3 * 9 + 8 * 2 + 2


def test_count_macs_model_scales_with_area_and_keeps_mode():
    m = kdiqa.create_model("iqa_test_tiny").train()
    small, big = count_macs(m, 64), count_macs(m, 128)
    assert m.training
    assert 3.5 < big / small < 4.5  # conv cost ~ pixel count (the head's share is tiny)


def test_measure_latency_fields():
    r = measure_latency(lambda: None, warmup=1, iters=7)
    assert r["iters"] == 7 and 0 <= r["p50_ms"] <= r["p90_ms"]
