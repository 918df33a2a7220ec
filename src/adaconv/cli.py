"""The ``adaconv`` command line (SPEC §6): a thin shell over the library.

Bad input ends with one line on stderr naming the problem and exit status 2; a batch in which some
items failed ends with status 1 and the list of failures.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .errors import AdaconvError
from .onnx_runner import OnnxRunnerError

EXIT_OK, EXIT_PARTIAL, EXIT_BAD_INPUT = 0, 1, 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2), like every other bad input."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(convert, accept, wanted: str):
    """An argparse type: ``convert`` the text, then check it with ``accept``; one-line message otherwise."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
        return value
    return parse


positive_int = _number(int, lambda v: v > 0, "a positive whole number")
non_negative_int = _number(int, lambda v: v >= 0, "a whole number >= 0")
positive_float = _number(float, lambda v: v > 0, "a positive number")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
unit_float = _number(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
stability_float = _number(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


def add_stylize(commands) -> None:
    parser = commands.add_parser("stylize", help="paint content images in the style of a painting",
                                 description="Stylise CONTENT (files, folders or globs) with STYLE.")
    parser.add_argument("content", nargs="+", metavar="CONTENT")
    parser.add_argument("--style", nargs="+", required=True, metavar="STYLE")
    parser.add_argument("--style-weights", help="comma-separated weights for blending several styles")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output file (one content; its extension picks the format, - for stdout) or folder")
    add_model_options(parser)
    parser.add_argument("--alpha", type=unit_float, default=1.0,
                        help="content-style trade-off in [0, 1] (1: full style)")
    parser.add_argument("--content-size", type=positive_int,
                        help="long side of the content in pixels (default: its own size, capped at 8192, "
                             "or at 2048 with --tile off)")
    parser.add_argument("--style-size", type=positive_int, help="short side at which the style is read")
    parser.add_argument("--preserve-color", choices=("histogram", "luminance"),
                        help="keep the photo's colours: recolour the style first, or keep the content's chroma")
    parser.add_argument("--mask", nargs="+", metavar="MASK",
                        help="spatial control: a label image (one colour per style) or one mask per style")
    parser.add_argument("--style-per-scale", metavar="A,B,C,D",
                        help="adaconv: four style images, coarse to fine, one per decoder scale")
    parser.add_argument("--tile", choices=("auto", "on", "off"), default="auto",
                        help="overlapping tiles with whole-image statistics (no seams), for images up to 8K; "
                             "auto (default): above 2048x2048 pixels; off: cap the long side at 2048")
    parser.add_argument("--tile-size", type=positive_int, default=1024, metavar="N",
                        help="tile side in pixels (default 1024, at least 256; smaller uses less memory)")
    parser.add_argument("--skip-existing", action="store_true",
                        help="folders: leave contents whose output already exists (resume an interrupted batch)")
    parser.add_argument("--allow-huge", action="store_true",
                        help="read images above Pillow's decompression-bomb limit (trusted files only)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress or notes on stderr")


def add_precision_option(parser) -> None:
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"), default="fp32",
                        help="fp32, or autocast to bf16 (~3x faster on a CPU with AMX, slower on one without native "
                             "bf16) or fp16 (CUDA), or auto (bf16 where native); the torch backend")


def add_model_options(parser) -> None:
    parser.add_argument("--model", choices=("adain", "adaconv"), help="model (default: the shipped default)")
    parser.add_argument("--weights", metavar="FILE", help="a weights file instead of the shipped weights")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    add_precision_option(parser)
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                        help="onnxruntime: run exported ONNX graphs (exported on first use unless --onnx DIR)")
    parser.add_argument("--onnx", metavar="DIR", help="a folder from `adaconv export onnx` (--backend onnxruntime)")
    parser.add_argument("--onnx-variant", choices=("fp32", "fp16", "int8"), default="fp32")


def add_train(commands) -> None:
    parser = commands.add_parser(
        "train", help="train a model (resumable, time-limited, multi-process)",
        description="Train AdaIN or AdaConv. On --resume a run keeps its recipe (iterations, batch and crop size, lr "
                    "and its decay and warm-up, λ and the content weight, the style encoder's lr scale, seed, "
                    "parametrization, style statistics, averaging), read from its checkpoint: an option given "
                    "with --resume changes it from there on, and the run records the change.")
    parser.add_argument("--model", choices=("adain", "adaconv"), required=True)
    parser.add_argument("--content", required=True, metavar="DIR", help="folder of content photos")
    parser.add_argument("--style", required=True, metavar="DIR", help="folder of style paintings")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (checkpoint, logs, samples)")
    parser.add_argument("--iterations", type=positive_int, help="the run's total steps (default 160000)")
    parser.add_argument("--batch-size", type=positive_int, help="images per step and process (default 8)")
    parser.add_argument("--crop-size", type=positive_int,
                        help="training crop S: random SxS crops (default 128; the finishing phase: 256)")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="Adam's learning rate before decay (default 1e-4, the papers')")
    parser.add_argument("--lr-decay", type=non_negative_float, help="lr / (1 + decay * iteration) (default 5e-5)")
    parser.add_argument("--warmup", type=non_negative_int, default=None, metavar="STEPS",
                        help="ramp the learning rate up linearly over the run's first STEPS steps (for --init: "
                             "a fresh optimiser's first steps otherwise undo part of the trained weights; "
                             "default 0)")
    parser.add_argument("--anneal-steps", type=non_negative_int, default=None, metavar="STEPS",
                        help="take the learning rate linearly to 0 over the next STEPS steps from where the run "
                             "is, then stop (a run's last phase; --resume goes on with it; 0: no anneal)")
    parser.add_argument("--style-weight", type=positive_float, help="λ (default 10)")
    parser.add_argument("--content-weight", type=positive_float,
                        help="the content loss's weight (default 1, the papers'); lowering it on a resumed run "
                             "shifts the trade-off toward style without enlarging Adam's steps, as raising λ would")
    parser.add_argument("--identity-weight", type=non_negative_float, metavar="W",
                        help="add W times SANet's identity loss (the content stylised with itself must give the "
                             "content back: 50 x pixel MSE + feature MSE at relu1_1..relu4_1; default 0, the "
                             "papers' objective; one more decode and encode per step)")
    parser.add_argument("--identity-pixel-weight", type=non_negative_float, metavar="P",
                        help="the identity loss's weight on its pixel term (default 50, SANet's; 0 keeps only "
                             "the feature terms, as a pixel MSE tends to soften the output)")
    parser.add_argument("--style-encoder-lr-scale", type=positive_float, metavar="X",
                        help="AdaConv: the style encoder learns at lr times X (default 1; its wide layers can blow "
                             "the style descriptor up at the full rate; see docs/training.md)")
    parser.add_argument("--style-statistics", choices=("crop", "square"),
                        help="AdaConv: the scale at which the style's channel statistics (the style loss's target "
                             "and the AdaIN base) are read: crop: the style resized to the crop size, the "
                             "content's scale, as stylize reads a style (measured worse, docs/training.md session 9); "
                             "square: the 256x256 image the style encoder reads (default)")
    parser.add_argument("--parametrization", choices=("residual", "paper"),
                        help="AdaConv layer form (residual, the default: starts as AdaIN; paper: the paper's)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), else fp32")
    parser.add_argument("--time-limit", type=positive_float, metavar="MINUTES",
                        help="stop cleanly with a checkpoint before this many minutes have passed since the "
                             "command started (loading the data and style cache included)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    parser.add_argument("--init", metavar="WEIGHTS", help="warm start from a weights file (fresh optimiser)")
    parser.add_argument("--seed", type=non_negative_int, help="the batches' order (default 0)")
    parser.add_argument("--checkpoint-every", type=positive_int, default=100)
    parser.add_argument("--sample-every", type=int, default=500, help="contact sheet every N steps (0: never)")
    parser.add_argument("--log-every", type=positive_int, default=10)
    parser.add_argument("--max-images", type=positive_int, help="use at most N images per folder")
    parser.add_argument("--val-content", metavar="DIR", help="held-out content photos (a fixed 5 are used)")
    parser.add_argument("--val-style", metavar="DIR", help="held-out paintings (a fixed 8 are used)")
    parser.add_argument("--val-every", type=positive_int, default=500, help="score the held-out pairs every N steps")
    parser.add_argument("--style-cache-gb", type=float, default=10.0,
                        help="AdaConv: this machine's memory for cached style features, split between its "
                             "data-parallel processes (0: recompute every step, with flips)")
    parser.add_argument("--ema-decay", type=float,
                        help="keep an exponential moving average of the weights with this decay, scored on the "
                             "held-out pairs and exported by default (default 0.999; 0: none)")


def add_export_weights(commands) -> None:
    parser = commands.add_parser("export-weights", help="a training run's checkpoint -> a weights file")
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("output", metavar="OUT.safetensors")
    parser.add_argument("--dtype", choices=("fp16", "fp32", "bf16"), default="fp16")
    parser.add_argument("--weights", choices=("auto", "average", "last"), default="auto",
                        help="the moving average of the weights or those of the last step (auto: the average "
                             "when the run kept one)")
    parser.add_argument("--int8", choices=("auto", "off"), default="auto",
                        help="auto: store the large matrices (AdaConv's fully connected layer) as per-row int8 "
                             "so the file stays under 95 MB; off: everything in --dtype")


def add_compare_runs(commands) -> None:
    parser = commands.add_parser(
        "compare-runs", help="arms of a training run on the same batches: did a recipe change pay?",
        description="Pairs the logged losses of a run and of forks of it (its checkpoint copied, resumed with one "
                    "option changed: the same batches) step by step, and sets their held-out losses side by side.")
    parser.add_argument("baseline", metavar="BASELINE_RUN")
    parser.add_argument("arms", nargs="+", metavar="ARM_RUN")
    parser.add_argument("--since", type=non_negative_int, metavar="N",
                        help="the fork's iteration: compare the steps after it (default: from the first logged "
                             "step where the arms differ)")
    parser.add_argument("--by", choices=("iteration", "images"), default="iteration",
                        help="iteration: the same batches, paired (default); images: a fork at another batch size, "
                             "per image seen, unpaired (needs --since)")
    parser.add_argument("--out", metavar="DIR", help="also write comparison.md and a plot per arm there")


def add_info(commands) -> None:
    parser = commands.add_parser("info", help="versions, devices, and how the shipped (or given) weights were trained")
    parser.add_argument("weights", nargs="*", metavar="WEIGHTS",
                        help="weights files to describe (default: the shipped weights of every model)")
    parser.add_argument("--json", action="store_true", help="everything, including the full provenance, as JSON")


def add_prepare_data(commands) -> None:
    parser = commands.add_parser("prepare-data", help="resize and re-encode an image folder for training")
    parser.add_argument("source", metavar="SRC")
    parser.add_argument("destination", metavar="DST")
    parser.add_argument("--short-side", type=positive_int, required=True)
    parser.add_argument("--quality", type=positive_int, default=90)
    parser.add_argument("--max-images", type=positive_int)
    parser.add_argument("--seed", type=int, default=0)


def add_encoder_scales(commands) -> None:
    parser = commands.add_parser("encoder-scales", help="recompute the VGG feature normalisation (maintainers)")
    parser.add_argument("folders", nargs="+", metavar="DIR")
    parser.add_argument("-o", "--output", required=True, metavar="FILE.safetensors")
    parser.add_argument("--every", default="1",
                        help="use every N-th image of each folder: one N, or one per folder (e.g. 8,50)")
    parser.add_argument("--size", type=positive_int, default=256)


def add_evaluate(commands) -> None:
    parser = commands.add_parser(
        "evaluate", help="score a model (or another tool's outputs) on the benchmark; compare scored runs",
        description="Stylise every content x style pair and score it (content error, style distance, Gram "
                    "distance, luminance SSIM, colour-histogram distance, structure probe); or score --outputs "
                    "made elsewhere; or --compare evaluation.json files.")
    parser.add_argument("--model", choices=("adain", "adaconv"), help="model (default: adain)")
    parser.add_argument("--weights", metavar="FILE", help="a weights file instead of the shipped weights")
    parser.add_argument("--outputs", metavar="DIR", help="score images made elsewhere, named <content>__<style>.png")
    parser.add_argument("--compare", nargs="+", metavar="JSON", help="side-by-side table and scatter plot of runs")
    parser.add_argument("--content", metavar="DIR", help="content photos (default: ../shared/data/bench/content)")
    parser.add_argument("--style", metavar="DIR", help="style paintings (default: ../shared/data/bench/style)")
    parser.add_argument("--out", metavar="DIR", help="run folder: images, evaluation.json/.md, contact_sheet.png")
    parser.add_argument("--size", type=positive_int, default=512,
                        help="short side at which each content is stylised (scoring is at a fixed size)")
    parser.add_argument("--style-size", type=positive_int,
                        help="short side at which the style is read (default: the model's own, as in stylize)")
    parser.add_argument("--alpha", type=unit_float, default=1.0,
                        help="content-style trade-off as in stylize (default 1): scoring a model at several alphas "
                             "traces its trade-off curve, so two models can be compared at equal content error")
    parser.add_argument("--grid", metavar="CxS", help="use C contents x S styles spread over the folders (e.g. 5x8)")
    parser.add_argument("--limit", type=positive_int, help="score N pairs spread over the grid instead of all")
    parser.add_argument("--label", help="name of this run in tables and plots (default: the weights file name)")
    parser.add_argument("--no-kernel-usage", dest="kernel_usage", action="store_false",
                        help="skip AdaConv's kernel-usage diagnostic: it depends on the weights only, not on "
                             "--alpha, so a trade-off curve needs it once")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_benchmark(commands) -> None:
    parser = commands.add_parser("benchmark", help="measure stylisation speed, memory and FLOP efficiency",
                                 description="Median latency of warm runs per image size (style encoding timed "
                                             "apart), throughput, peak memory and achieved GFLOP/s against the "
                                             "device's peak. Running `adaconv train` processes are paused meanwhile.")
    parser.add_argument("--model", choices=("adain", "adaconv", "all"), default="all")
    parser.add_argument("--weights", metavar="FILE", help="a weights file (with --model adain or adaconv)")
    parser.add_argument("--sizes", default="256,512,1024,2048",
                        help="comma-separated content sizes: N (square) or WxH, e.g. 512,3840x2160,7680x4320")
    parser.add_argument("--tile", choices=("auto", "on", "off"), default="auto",
                        help="torch backend: time sizes above 2048x2048 pixels (auto) or all (on) as stylize runs "
                             "them, in tiles with whole-image statistics")
    parser.add_argument("--batch", type=positive_int, default=1, help="contents per pass")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="fp32, or autocast to bf16 (CPU/CUDA) or fp16 (CUDA)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs per size (median reported)")
    parser.add_argument("--warmup", type=non_negative_int, default=1,
                        help="untimed runs first (the first one also counts the FLOPs)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                        help="onnxruntime: export the model and time the ONNX graphs instead")
    parser.add_argument("--onnx-variant", choices=("fp32", "fp16", "int8"), default="fp32")
    parser.add_argument("--no-pause", action="store_true", help="do not pause running training processes")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or pause notes on stderr")


def add_export(commands) -> None:
    parser = commands.add_parser("export", help="export a model for other runtimes (ONNX)",
                                 description="Write the model as two ONNX graphs (style image -> style code; "
                                             "content + style code -> image) with dynamic height and width.")
    parser.add_argument("format", choices=("onnx",))
    parser.add_argument("--model", choices=("adain", "adaconv"), required=True)
    parser.add_argument("--weights", metavar="FILE", help="a weights file instead of the shipped weights")
    parser.add_argument("-o", "--output", required=True, metavar="DIR")
    parser.add_argument("--fp16", action="store_true", help="also write half-precision graphs (error measured)")
    parser.add_argument("--int8", action="store_true",
                        help="also write an 8-bit quantised content graph (calibrated on the examples; error measured)")
    parser.add_argument("--opset", type=positive_int, default=18)


def add_video(commands) -> None:
    parser = commands.add_parser("video", help="stylise a video file (audio kept)",
                                 description="Stylise every frame of a video with one style; frame rate, size "
                                             "and audio are kept. Needs the video extra (PyAV).")
    parser.add_argument("input", metavar="IN")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help=".mp4, .mkv, .mov, .webm or .avi")
    parser.add_argument("--style", required=True, metavar="STYLE")
    add_model_options(parser)
    parser.add_argument("--alpha", type=unit_float, default=1.0, help="content-style trade-off in [0, 1]")
    parser.add_argument("--batch", type=positive_int, default=4, help="frames per pass")
    parser.add_argument("--stability", type=stability_float, default=0.0,
                        help="temporal smoothing in [0, 1): statistics averaged over frames and static regions "
                             "blended (0: off; 0.8 is a good start)")
    parser.add_argument("--content-size", type=positive_int, help="long side of the output frames")
    parser.add_argument("--style-size", type=positive_int, help="short side at which the style is read")
    parser.add_argument("--flicker", action="store_true", help="measure flicker (output change / input change)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_camera(commands) -> None:
    parser = commands.add_parser("camera", help="live camera (or video file) stylised in a window",
                                 description="Stylise a camera feed live: n/p switch styles, q quits. With "
                                             "--no-window -o OUT it runs headless. Needs the camera extra (OpenCV).")
    parser.add_argument("--style", nargs="+", required=True, metavar="STYLE")
    parser.add_argument("--source", default="0", help="camera index or a video file (default: camera 0)")
    parser.add_argument("--no-window", action="store_true", help="do not open a window (needs -o)")
    parser.add_argument("-o", "--output", metavar="OUT.mp4", help="also write the stylised frames to a video")
    parser.add_argument("--size", type=positive_int, default=256, help="long side of the stylised frames")
    parser.add_argument("--max-frames", type=positive_int, help="stop after N frames")
    parser.add_argument("--alpha", type=unit_float, default=1.0)
    parser.add_argument("--stability", type=stability_float, default=0.0)
    add_model_options(parser)


def add_stylize_dataset(commands) -> None:
    parser = commands.add_parser("stylize-dataset", help="stylise a whole dataset tree, one random painting each",
                                 description="Every image below SRC gets a painting from STYLES chosen by a hash "
                                             "of its path and --seed, written to the same path below OUT. "
                                             "Resumable; sharded across processes with torchrun.")
    parser.add_argument("source", metavar="SRC")
    parser.add_argument("styles", metavar="STYLES")
    parser.add_argument("output", metavar="OUT")
    add_model_options(parser)
    parser.add_argument("--size", type=positive_int,
                        help="short side of the outputs, up or down (default: the input's size, long side <= 2048)")
    parser.add_argument("--alpha", type=unit_float, default=1.0, help="content-style trade-off (1: full style)")
    parser.add_argument("--seed", type=int, default=0, help="changes which painting each image gets")
    parser.add_argument("--skip-existing", action=argparse.BooleanOptionalAction, default=True,
                        help="leave images whose output exists (default: on, so a killed run resumes)")
    parser.add_argument("--allow-huge", action="store_true",
                        help="read images above Pillow's decompression-bomb limit (trusted files only)")
    parser.add_argument("--json", action="store_true", help="print this rank's summary as JSON on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary line on stderr")


def add_app(commands) -> None:
    parser = commands.add_parser("app", help="the web demo (Gradio): upload a photo, pick a painting",
                                 description="Serve the style-transfer web demo and its HTTP API (endpoint "
                                             "/stylize). Needs the app extra: pip install \"adaconv[app]\".")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=_number(int, lambda v: 1 <= v <= 65535, "a port in 1-65535"), default=7860,
                        help="port to listen on (default 7860)")
    parser.add_argument("--model", choices=("adain", "adaconv"), help="model (default: the shipped default)")
    parser.add_argument("--weights", metavar="FILE", help="a weights file instead of the shipped weights")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    add_precision_option(parser)
    parser.add_argument("--max-pixels", type=positive_int, default=2048 * 2048, metavar="N",
                        help="refuse images with more pixels than this (default 2048x2048)")
    parser.add_argument("--max-upload-mb", type=positive_int, default=20, metavar="MB",
                        help="refuse uploads larger than this (default 20)")
    parser.add_argument("--max-queue", type=positive_int, default=64, metavar="N",
                        help="requests that may wait; more are turned away (default 64)")
    parser.add_argument("--concurrency", type=positive_int, metavar="N",
                        help="stylisations run at once (default: one per two cores)")
    parser.add_argument("--content-cache-mb", type=non_negative_int, default=512, metavar="MB",
                        help="memory for the last photos' encoder features, so one photo in another style costs "
                             "about half (default 512; 0: off)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="adaconv", description="Fast, structure-aware arbitrary style transfer.")
    parser.add_argument("--version", action="version", version=f"adaconv {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_stylize(commands)
    add_train(commands)
    add_export_weights(commands)
    add_compare_runs(commands)
    add_info(commands)
    add_prepare_data(commands)
    add_encoder_scales(commands)
    add_evaluate(commands)
    add_benchmark(commands)
    add_export(commands)
    add_video(commands)
    add_camera(commands)
    add_stylize_dataset(commands)
    add_app(commands)
    return parser


def run_train(args) -> int:
    from .training import TrainConfig, Trainer

    config = TrainConfig(
        model=args.model, content=args.content, style=args.style, out=args.out, iterations=args.iterations,
        batch_size=args.batch_size, crop_size=args.crop_size, lr=args.lr, lr_decay=args.lr_decay,
        warmup=args.warmup, anneal_steps=args.anneal_steps, style_encoder_lr_scale=args.style_encoder_lr_scale,
        style_weight=args.style_weight, content_weight=args.content_weight,
        identity_weight=args.identity_weight, identity_pixel_weight=args.identity_pixel_weight,
        device=args.device, threads=args.threads,
        time_limit=args.time_limit, resume=args.resume, init=args.init, seed=args.seed,
        parametrization=args.parametrization, style_statistics=args.style_statistics,
        checkpoint_every=args.checkpoint_every, sample_every=args.sample_every, log_every=args.log_every,
        max_images=args.max_images, precision=args.precision, val_content=args.val_content,
        val_style=args.val_style, val_every=args.val_every, style_cache_gb=args.style_cache_gb,
        ema_decay=args.ema_decay)
    summary = Trainer(config).train()
    # one write (atomic on a pipe): data-parallel ranks share stdout, and torchrun runs them unbuffered
    sys.stdout.write(json.dumps(summary) + "\n")
    sys.stdout.flush()
    return EXIT_OK


def run_export_weights(args) -> int:
    from .training import export_weights

    provenance = export_weights(args.run_dir, args.output, dtype=args.dtype, weights=args.weights,
                                int8=args.int8)
    print(json.dumps(provenance))
    return EXIT_OK


def run_info(args) -> int:
    from .info_command import info_command

    info_command(args)
    return EXIT_OK


def run_prepare_data(args) -> int:
    from .data import prepare_folder

    summary = prepare_folder(args.source, args.destination, short_side=args.short_side, quality=args.quality,
                             max_images=args.max_images, seed=args.seed, progress=sys.stderr.isatty())
    print(f"prepared {summary['written']} images, skipped {summary['skipped']} unreadable", file=sys.stderr)
    for path in summary["skipped_files"]:
        print(f"  skipped: {path}", file=sys.stderr)
    return EXIT_OK


def run_encoder_scales(args) -> int:
    from .encoder import compute_feature_scales, save_feature_scales, scales_id
    from .imageio import list_images, to_tensor

    try:
        every = [int(n) for n in args.every.split(",")]
    except ValueError:
        raise AdaconvError(f"--every {args.every}: expected whole numbers") from None
    if len(every) == 1:
        every *= len(args.folders)
    if len(every) != len(args.folders) or min(every) < 1:
        raise AdaconvError(f"--every {args.every}: give one positive N, or one per folder")
    paths = [p for folder, n in zip(args.folders, every) for p in list_images(folder)[::n]]
    if not paths:
        raise AdaconvError("no images found in " + ", ".join(args.folders))
    scales = compute_feature_scales((to_tensor(p) for p in paths), size=args.size, progress=sys.stderr.isatty())
    save_feature_scales(scales, args.output)
    print(f"wrote {args.output} ({scales_id(scales)}) from {len(paths)} images", file=sys.stderr)
    return EXIT_OK


def run_stylize(args) -> int:
    from .stylize_command import stylize_command

    return stylize_command(args)


def run_evaluate(args) -> int:
    from .evaluate_command import evaluate_command

    if not args.compare and not args.out:
        raise AdaconvError("--out DIR is required (except with --compare)")
    return evaluate_command(args)


def run_compare_runs(args) -> int:
    from pathlib import Path

    from .fork_comparison import compare_arms, comparison_markdown, comparison_plot
    from .imageio import write_atomically

    results = [(arm, compare_arms(Path(args.baseline), Path(arm), since=args.since, by=args.by)) for arm in args.arms]
    markdown = "\n".join(comparison_markdown(result, args.baseline, arm) for arm, result in results)
    print(markdown)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_atomically(out / "comparison.md", lambda f: f.write(markdown.encode()))
        for arm, result in results:
            figure = comparison_plot(result, args.baseline, arm)
            target = out / f"comparison_{Path(arm).name}.png"
            write_atomically(target, lambda f, figure=figure: figure.savefig(f, format="png", dpi=110))
            print(f"wrote {target}", file=sys.stderr)
        print(f"wrote {out / 'comparison.md'}", file=sys.stderr)
    return EXIT_OK


def run_benchmark(args) -> int:
    from .benchmark_command import benchmark_command

    return benchmark_command(args)


def run_export(args) -> int:
    from .export import export_onnx
    from .inference import Stylizer

    stylizer = (Stylizer.from_weights(args.weights, model=args.model, device="cpu") if args.weights
                else Stylizer.from_pretrained(args.model, device="cpu"))
    variants = ["fp32"] + (["fp16"] if args.fp16 else []) + (["int8"] if args.int8 else [])
    manifest = export_onnx(stylizer.model, args.output, variants=variants, opset=args.opset,
                           source={k: v for k, v in stylizer.info.items() if k in ("path", "provenance")},
                           progress=lambda text: print(text, file=sys.stderr))
    for name, entry in manifest["variants"].items():
        error = entry.get("error_vs_fp32")
        note = f" (mean |error| {error['mean_abs'] * 255:.2f}/255 vs fp32)" if error else ""
        print(f"{name}: {args.output}/{entry['style']} + {args.output}/{entry['content']}{note}")
    return EXIT_OK


def run_video(args) -> int:
    from .stylize_command import load_stylizer
    from .video import stylize_video

    stylizer = load_stylizer(args)
    summary = stylize_video(stylizer, args.input, args.output, args.style, alpha=args.alpha, batch=args.batch,
                            stability=args.stability, content_size=args.content_size, style_size=args.style_size,
                            progress=sys.stderr.isatty() and not args.quiet, measure_flicker=args.flicker)
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        extra = f", flicker {summary['flicker']}" if "flicker" in summary else ""
        print(f"{args.output}: {summary['frames']} frames at {summary['fps']:.2f} FPS{extra}", file=sys.stderr)
    return EXIT_OK


def run_camera(args) -> int:
    from .camera import run_camera as camera_loop
    from .stylize_command import load_stylizer

    args.quiet = True
    camera_loop(load_stylizer(args), args.style, source=args.source, window=not args.no_window,
                output=args.output, size=args.size, alpha=args.alpha, stability=args.stability,
                max_frames=args.max_frames)
    return EXIT_OK


def run_stylize_dataset(args) -> int:
    from .dataset_command import stylize_dataset_command

    return stylize_dataset_command(args)


def run_app(args) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise AdaconvError('the web app needs Gradio: pip install "adaconv[app]"') from None
    from .app import AppConfig, serve
    from .stylize_command import load_stylizer

    args.backend, args.onnx = "torch", None  # the app's controls (colour, per-scale mixing) need the torch model
    config = AppConfig(max_pixels=args.max_pixels, max_upload_mb=args.max_upload_mb, max_queue=args.max_queue,
                       concurrency=args.concurrency or 0, content_cache_mb=args.content_cache_mb)
    serve(load_stylizer(args), host=args.host, port=args.port, config=config,
          announce=lambda text: print(text, file=sys.stderr, flush=True))
    return EXIT_OK


COMMANDS = {"stylize": run_stylize, "train": run_train, "export-weights": run_export_weights,
            "compare-runs": run_compare_runs, "info": run_info,
            "prepare-data": run_prepare_data, "encoder-scales": run_encoder_scales, "evaluate": run_evaluate,
            "benchmark": run_benchmark, "export": run_export, "video": run_video, "camera": run_camera,
            "stylize-dataset": run_stylize_dataset, "app": run_app}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if argv is None:  # the command itself, not a call from Python: restart under tcmalloc (allocator.py)
            from .allocator import use_tcmalloc_if_installed
            use_tcmalloc_if_installed(sys.argv[1:])
        return COMMANDS[args.command](args)
    except (AdaconvError, OnnxRunnerError) as error:
        print(f"adaconv {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"adaconv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
