"""``bitnet validate FILE``: check that a GGUF file is a BitNet b1.58 model we can run.

Exit status: 0 when the file is valid, 1 when problems were found (each printed
with its code and, when it concerns one tensor, the tensor's name).
"""

from __future__ import annotations

import argparse
import json

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate",
        help="check a BitNet GGUF model file",
        description=(
            "Check the container (magic, version, header, tensor data bounds), the architecture "
            "and hyper-parameters, every required tensor (shape, type, ternary values) and the "
            "vocabulary. Never modifies the file."
        ),
    )
    p.add_argument("file", help="path to a .gguf file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quick", action="store_true", help="check header and tensor directory only, not tensor data")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bitnet_sdk.loading import validate

    report = validate(args.file, check_data=not args.quick)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    elif report.ok:
        print(f"OK  {report.path}: {report.arch} model, {report.n_tensors} tensors")
    else:
        print(f"INVALID  {report.path}: {len(report.problems)} problem(s)")
        for p in report.problems:
            where = f" [{p.tensor}]" if p.tensor else ""
            print(f"  {p.code}{where}: {p.message}")
    return 0 if report.ok else 1
