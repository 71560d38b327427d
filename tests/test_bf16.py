"""SOLVER.AMP.ENABLED on the CPU: training steps under bf16 autocast where the CPU runs bf16
natively (fp32 elsewhere), masks assembled in fp32."""

import json

import torch
from conftest import REPO, datasets_env, run_python
from test_sgnet import TINY

from vis_d2.modeling.mask_windows import blend
from vis_d2.utils.precision import CPU_BF16_ENV

CONFIG = str(REPO / "configs" / "synthetic" / "SGNet_R18_synthetic.yaml")


def test_masks_are_assembled_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    bases, coef = torch.randn(1, 8, 20, 24), torch.randn(2, 4, 8)
    boxes = torch.tensor([[1.0, 2.0, 15.5, 18.0], [4.0, 0.0, 24.0, 9.0]])
    args = (torch.zeros(2, dtype=torch.int64), boxes)
    grid = (torch.tensor([2, 2]), torch.tensor([2, 2]))
    reference = blend(bases, *args, coef, *grid)
    expected = torch.where(reference.valid, reference.logits, 0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = blend(bases.bfloat16(), *args, coef.bfloat16(), *grid)
    assert torch.equal(out.valid, reference.valid)
    out = torch.where(out.valid, out.logits, 0.0)
    assert out.dtype == torch.float32
    # the inputs' bf16 rounding remains (8 bits of mantissa), the products do not add to it
    assert torch.allclose(out, expected, atol=0.1)
    bf16_products = torch.bmm(bases.bfloat16().flatten(2).transpose(1, 2), coef[:1].bfloat16().mT)
    assert bf16_products.dtype == torch.bfloat16  # what the assembly avoids


def test_train_net_trains_under_bf16_autocast_only_where_the_cpu_runs_bf16(synthetic, tmp_path):
    """Both answers of the capability query, through tools/train_net.py: bf16 where it is
    native; elsewhere SOLVER.AMP.ENABLED falls back to fp32 and says why."""
    env = datasets_env(synthetic[0], tmp_path)
    losses, logs = {}, {}
    # (SOLVER.AMP.ENABLED, what the CPU is taken to have: VIS_D2_CPU_BF16)
    for amp, native in (("False", "1"), ("True", "1"), ("True", "0")):
        out = tmp_path / f"{amp}-{native}"
        proc = run_python(
            str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG, *TINY,
            "SOLVER.AMP.ENABLED", amp, "SOLVER.MAX_ITER", "1", "SOLVER.IMS_PER_BATCH", "2",
            "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()",
            "SEED", "0", "OUTPUT_DIR", str(out), env={**env, CPU_BF16_ENV: native}, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        logs[amp, native] = proc.stdout + proc.stderr
        (record,) = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
        losses[amp, native] = {k: v for k, v in record.items() if k.startswith("loss_")}
    bf16 = "SOLVER.AMP.ENABLED: bf16 autocast on the CPU"
    fallback = "SOLVER.AMP.ENABLED is ignored: the CPU"
    assert bf16 in logs["True", "1"] and "native bf16" in logs["True", "1"]
    assert fallback not in logs["True", "1"]
    assert bf16 not in logs["False", "1"] and fallback not in logs["False", "1"]
    assert bf16 not in logs["True", "0"] and fallback in logs["True", "0"]
    assert "no native bf16" in logs["True", "0"] and "running in fp32" in logs["True", "0"]
    fp32 = losses["False", "1"]
    assert losses["True", "1"].keys() == fp32.keys() and fp32
    for key, value in fp32.items():
        # the same batch and initialisation: bf16 rounding only
        assert abs(losses["True", "1"][key] - value) <= 0.05 * abs(value) + 1e-3, (key, losses)
    assert losses["True", "1"] != fp32
    # the fallback is fp32 itself: the same losses to the last digit
    assert losses["True", "0"] == fp32


def test_amp_inference_runs_the_dense_graphs_in_bf16_channels_last(monkeypatch):
    from detectron2.modeling import build_model
    from test_sgnet import tiny_cfg

    from vis_d2.modeling.meta_arch import AutocastGraph

    monkeypatch.setenv(CPU_BF16_ENV, "1")  # what a CPU with native bf16 does, on any CPU
    cfg = tiny_cfg()
    torch.manual_seed(0)
    fp32 = build_model(cfg).eval()
    cfg.TEST.AMP.ENABLED = True
    amp = build_model(cfg).eval()
    amp.load_state_dict(fp32.state_dict())
    graphs = amp.graphs()
    assert set(graphs) == set(fp32.graphs()) and len(graphs) == 3
    assert all(isinstance(g, AutocastGraph) for g in graphs.values())
    assert not any(isinstance(g, AutocastGraph) for g in fp32.graphs().values())

    seen = []
    stem = amp.backbone.bottom_up.stem.conv1
    handle = stem.register_forward_hook(lambda m, i, o: seen.append(o))
    image = torch.randint(0, 256, (3, 64, 96), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = fp32.graphs()["frame"](image.float())
        outputs = graphs["frame"](image.float())
    handle.remove()
    (conv,) = seen
    assert conv.dtype == torch.bfloat16 and conv.is_contiguous(memory_format=torch.channels_last)
    assert len(outputs) == len(expected)
    for out, ref in zip(outputs, expected, strict=True):
        assert out.dtype == torch.float32 and out.shape == ref.shape
        # in the graph's memory format: maps channels-last, as the mask assembly reads them
        assert out.is_contiguous(memory_format=torch.channels_last) == (out.dim() == 4)
        # bf16 keeps 8 bits of mantissa: a few per cent through the ~20 layers of the graph
        assert float((out - ref).norm() / ref.norm().clamp(min=1e-6)) < 0.1

    frame = {"image": image.byte(), "height": 64, "width": 96, "is_first": True}
    with torch.no_grad():
        inst = amp.inference_frame(frame)
    assert inst.pred_boxes.tensor.dtype == torch.float32 and inst.scores.dtype == torch.float32
    assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape[1:] == (64, 96)
