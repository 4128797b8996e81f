"""Writes one small PNG frame strip per built-in data generator into docs/images/.

    python examples/data_gallery.py [--out docs/images] [--frames 8]

Files: moving_mnist.png, bouncing_balls.png, radar.png (rain in mm/h, invalid pixels grey), shapes.png (frames and
their labels), anomalies.png (a normal continuation above the sequence with an anomaly; anomalous frames framed
in red).
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap

from convlstm.data.synthetic.anomalies import AnomalySequences
from convlstm.data.synthetic.bouncing_balls import BouncingBalls
from convlstm.data.synthetic.moving_mnist import MovingMNIST
from convlstm.data.synthetic.radar import SyntheticRadar
from convlstm.data.synthetic.shapes import MovingShapesSegmentation

CELL_INCHES = 0.9


def strip(
    rows: list[tuple[str, list[np.ndarray], dict]],
    path: Path,
    titles: list[str] | None = None,
    cell: float = CELL_INCHES,
) -> None:
    """Saves a grid: one row per (label, frames, imshow keywords); ``cell`` is the frame size in inches."""
    columns = max(len(frames) for _, frames, _ in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(cell * columns + 0.9, cell * len(rows) + 0.25), squeeze=False)
    for r, (label, frames, style) in enumerate(rows):
        for c in range(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(frames):
                ax.imshow(frames[c], **style)
            if r == 0 and titles:
                ax.set_title(titles[c], fontsize=7, pad=2)
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.subplots_adjust(left=0.07, right=0.995, top=0.88 if titles else 0.98, bottom=0.02, wspace=0.04, hspace=0.08)
    fig.savefig(path, dpi=72)
    plt.close(fig)


def pick(frames: np.ndarray, count: int) -> tuple[list[np.ndarray], list[int]]:
    """``count`` frames spread evenly over (T, H, W) and their indices."""
    index = np.linspace(0, len(frames) - 1, count).round().astype(int).tolist()
    return [frames[i] for i in index], index


def gallery(out: Path, count: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    grey = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0, "interpolation": "nearest"}
    written = []

    item = MovingMNIST(split="test", num_sequences=1)[0]
    frames, index = pick(np.concatenate([item["context"][:, 0], item["target"][:, 0]]), count)
    strip([("Moving MNIST", frames, grey)], out / "moving_mnist.png", [f"t={i}" for i in index])
    written.append(out / "moving_mnist.png")

    item = BouncingBalls(split="test", num_sequences=1)[0]
    frames, index = pick(np.concatenate([item["context"][:, 0], item["target"][:, 0]]), count)
    strip([("bouncing balls", frames, grey)], out / "bouncing_balls.png", [f"t={i}" for i in index])
    written.append(out / "bouncing_balls.png")

    radar = SyntheticRadar(split="test", units="mm/h", num_sequences=8)
    # the test sequence with the most heavy rain among the first eight shows the most of the colour scale
    item = max((radar[i] for i in range(8)), key=lambda it: int((it["target"] >= 10).sum()))
    rain = np.concatenate([item["context"][:, 0], item["target"][:, 0]])
    invalid = item["mask"][0, 0].numpy() == 0
    bounds = [0.0, 1e-3, 0.5, 2.0, 5.0, 10.0, 30.0, 1000.0]  # dry, then the HKO-7 thresholds
    colours = ["white", "#c6dbef", "#6baed6", "#31a354", "#fed976", "#fd8d3c", "#bd0026"]
    cmap = ListedColormap(colours).with_extremes(bad="#b0b0b0")
    style = {"cmap": cmap, "norm": BoundaryNorm(bounds, len(colours)), "interpolation": "nearest"}
    frames, index = pick(np.ma.masked_array(rain, np.broadcast_to(invalid, rain.shape)), count)
    titles = [f"{'in' if i < radar.context_frames else 'out'} t={i}" for i in index]
    strip([("radar mm/h", frames, style)], out / "radar.png", titles, cell=1.3)
    written.append(out / "radar.png")

    shapes = MovingShapesSegmentation(split="test", num_sequences=1)
    item = shapes[0]
    frames, index = pick(item["context"][:, 0].numpy(), count)
    labels, _ = pick(item["labels"].numpy(), count)
    label_style = {"cmap": ListedColormap(["black", "#1f77b4", "#ff7f0e"]), "vmin": 0, "vmax": 2}
    strip(
        [("frames", frames, grey), ("labels", labels, {**label_style, "interpolation": "nearest"})],
        out / "shapes.png",
        [f"t={i}" for i in index],
    )
    written.append(out / "shapes.png")

    anomalies = AnomalySequences(
        split="test", source="digits", kinds=["teleport"], anomaly_fraction=1.0, num_sequences=1
    )
    sample = anomalies.sample(0)
    normal, index = pick(sample.normal_frames, count)
    shown, _ = pick(sample.frames, count)
    titles = [f"t={i}" + (" ANOM" if sample.labels[i] else "") for i in index]
    path = out / "anomalies.png"
    strip([("normal", normal, grey), (sample.kind, shown, grey)], path, titles)
    written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    for path in gallery(args.out, args.frames):
        print(f"{path}  {path.stat().st_size / 1024:.1f} KB")


if __name__ == "__main__":
    main()
