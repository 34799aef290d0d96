"""Contact sheet and throughput of the 25 KADID-10k / KADIS-700k distortions.

Renders one reference image under every distortion type (rows) and level (columns), with the type's
KADID index, name and level parameters as row labels, to check the distortions by eye. Optionally
measures images/s per type at 500×500 on the CPU.

Example:
    python benchmarks/distortion_sheet.py --image "$KDIQA_DATA/pristine/kodak24/kodim23.png" \\
        --out docs/distortions_contact_sheet.png --size 128
    python benchmarks/distortion_sheet.py --image photo.png --throughput runs/distortion_speed.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps, features

from kdiqa.data.distortions import apply_distortion, distortion_spec, list_distortions
from kdiqa.data.io import load_image

LABEL_W, HEADER_H, GAP = 240, 22, 2


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    # Pillow's bundled font scales only when Pillow has FreeType; otherwise the fixed bitmap font.
    return ImageFont.load_default(size=size) if features.check("freetype2") else ImageFont.load_default()


def _fmt(p: float) -> str:
    return f"{p:g}"


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int = LABEL_W - 10) -> list[str]:
    lines = [""]
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}".strip()
        if lines[-1] and draw.textlength(candidate, font=font) > width:
            lines.append(word)
        else:
            lines[-1] = candidate
    return lines


def _square(img: Image.Image, size: int) -> Image.Image:
    return ImageOps.fit(img, (size, size), method=Image.Resampling.LANCZOS)


def render_sheet(reference: Image.Image, size: int = 160, seed: int = 0) -> Image.Image:
    """Builds the contact sheet: label column, reference column, then levels 1..5.

    Args:
        reference: the pristine image; it is resized and centre-cropped to ``size``×``size`` before
            it is distorted, so pixel-sized effects (blur radii, blocks) look larger than on a photo.
        size: tile side in pixels.
        seed: seed for the random distortion types.

    Returns:
        The sheet as an RGB image.
    """
    ref = _square(reference, size)
    names = list_distortions()
    cols = 6
    sheet = Image.new("RGB", (LABEL_W + cols * (size + GAP), HEADER_H + len(names) * (size + GAP)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font, small = _font(13), _font(11)
    for c, title in enumerate(["reference", *(f"level {i}" for i in range(1, 6))]):
        draw.text((LABEL_W + c * (size + GAP) + 4, 4), title, fill=(0, 0, 0), font=font)
    for r, name in enumerate(names):
        spec = distortion_spec(name)
        y = HEADER_H + r * (size + GAP)
        lines = [(f"{spec.kadid_index:02d} {name}", font, (0, 0, 0))]
        lines += [(t, small, (60, 60, 60)) for t in _wrap(draw, "params: " + ", ".join(map(_fmt, spec.params)), small)]
        if spec.random:
            lines.append((f"(random, seed {seed})", small, (120, 120, 120)))
        for i, (text, f, colour) in enumerate(lines):
            draw.text((4, y + 4 + 17 * i), text, fill=colour, font=f)
        sheet.paste(ref, (LABEL_W, y))
        for level in range(1, 6):
            tile = apply_distortion(ref, name, level, seed=seed)
            sheet.paste(tile, (LABEL_W + level * (size + GAP), y))
    return sheet


def measure_throughput(reference: Image.Image, reps: int = 2, size: int = 500) -> dict[str, float]:
    """Images per second of each type on a ``size``×``size`` image (all five levels, ``reps`` rounds)."""
    img = np.asarray(_square(reference, size))
    result = {}
    for name in list_distortions():
        apply_distortion(img, name, 1)  # warm-up (imports, caches)
        start = time.perf_counter()
        for rep in range(reps):
            for level in range(1, 6):
                apply_distortion(img, name, level, seed=rep)
        result[name] = 5 * reps / (time.perf_counter() - start)
    return result


def _synthetic(size: int = 512) -> Image.Image:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([xx, yy, 0.5 + 0.4 * np.sin(20 * xx * yy)], -1) + rng.normal(0, 0.02, (size, size, 3))
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def main(argv: list[str] | None = None) -> None:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, help="reference image (synthetic if omitted, throughput only)")
    parser.add_argument("--out", type=Path, help="where to write the contact sheet PNG")
    parser.add_argument("--size", type=int, default=160, help="tile side in pixels (default 160)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--throughput", type=Path, help="measure images/s per type at 500x500, write JSON")
    parser.add_argument("--reps", type=int, default=2, help="throughput rounds over the 5 levels")
    args = parser.parse_args(argv)
    if args.out is None and args.throughput is None:
        parser.error("nothing to do: give --out and/or --throughput")
    if args.out is not None and args.image is None:
        parser.error("--out needs --image")
    reference = load_image(args.image) if args.image is not None else _synthetic()

    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        render_sheet(reference, args.size, args.seed).save(args.out)
        print(f"wrote {args.out}")
    if args.throughput is not None:
        speeds = measure_throughput(reference, reps=args.reps)
        args.throughput.parent.mkdir(parents=True, exist_ok=True)
        payload = {"size": [500, 500], "reps": args.reps, "images_per_s": speeds}
        args.throughput.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.throughput}; slowest types (images/s):")
        for name, ips in sorted(speeds.items(), key=lambda kv: kv[1])[:5]:
            print(f"  {name:30s} {ips:8.2f}")


if __name__ == "__main__":
    main()
