"""Generate the synthetic action dataset (UCF101 or HMDB51 layout).

Example: python tools/make_synthetic.py data/synthetic --num-groups 7 --clips-per-group 3 --size 64 48
"""

from __future__ import annotations

import argparse

from mfuse.synthetic import SyntheticConfig, generate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = SyntheticConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="output directory (new or empty, or an earlier synthetic dataset)")
    parser.add_argument("--num-groups", type=int, default=defaults.num_groups, help="groups per class (>= 4)")
    parser.add_argument("--clips-per-group", type=int, default=defaults.clips_per_group)
    parser.add_argument("--size", type=int, nargs=2, metavar=("WIDTH", "HEIGHT"), default=defaults.size)
    parser.add_argument("--num-frames", type=int, default=defaults.num_frames)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--layout", choices=("ucf101", "hmdb51"), default=defaults.layout)
    parser.add_argument("--fps", type=int, default=defaults.fps)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier synthetic dataset made with other parameters")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = SyntheticConfig(num_groups=args.num_groups, clips_per_group=args.clips_per_group,
                             size=tuple(args.size), num_frames=args.num_frames, seed=args.seed,
                             layout=args.layout, fps=args.fps)
    dataset = generate(args.root, config, overwrite=args.overwrite)
    print(f"{len(dataset.videos)} videos of {len(dataset.classes)} classes in {dataset.root} ({config.layout})")


if __name__ == "__main__":
    main()
