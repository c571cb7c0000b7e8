"""The ``simplexity`` command line."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from simplexity.tour import normalizer_tour

    print("# simplexity demo\n")
    print("## Normalizers\n")
    print(normalizer_tour(seed=args.seed))
    return 0


def _list(args: argparse.Namespace) -> int:
    from simplexity import normalizers

    print("normalizers: " + ", ".join(normalizers.names()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simplexity",
        description="Sparse, relaxed and multimodal distributions on the simplex: demos and experiments.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demo on built-in data and print its tables")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(func=_demo)
    lst = sub.add_parser("list", help="list the registered names")
    lst.set_defaults(func=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, TypeError, FileNotFoundError, KeyError) as error:
        print(f"simplexity: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
