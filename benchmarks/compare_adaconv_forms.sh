#!/usr/bin/env bash
# docs/training.md, "AdaConv: the residual form ...": AdaConv residual vs paper form, warm (from AdaIN v0.1) vs from scratch, same seed and batches,
# 150 steps at 96² crops, batch 8, lr 1e-4, bf16; held-out loss on the 40 fixed bench pairs every 50 steps.
cd "$(dirname "$0")/.."
common=(--model adaconv --content ../shared/data/train/content --style ../shared/data/train/style
        --iterations 150 --crop-size 96 --seed 0 --val-every 50 --checkpoint-every 50 --sample-every 0
        --ema-decay 0 --val-content ../shared/data/bench/content --val-style ../shared/data/bench/style)
rm -rf runs/compare && mkdir -p runs/compare
nice -n 5 adaconv train "${common[@]}" --parametrization residual --out runs/compare/residual_warm --init src/adaconv/weights/adain.safetensors
nice -n 5 adaconv train "${common[@]}" --parametrization paper --out runs/compare/paper_warm --init src/adaconv/weights/adain.safetensors
nice -n 5 adaconv train "${common[@]}" --parametrization residual --out runs/compare/residual_scratch
python benchmarks/plot_runs.py docs/img/adaconv_forms.png \
    "runs/compare/residual_warm=residual form, warm (AdaIN v0.1)" "runs/compare/paper_warm=paper form, warm (AdaIN v0.1)" \
    "runs/compare/residual_scratch=residual form, from scratch" \
    --title "AdaConv, 96² crops, batch 8, lr 1e-4: training loss (lines), held-out loss (markers)"
echo done
