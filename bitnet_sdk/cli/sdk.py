"""``bitnet sdk generate --lang python|typescript|go --out DIR``: write a client SDK from the spec.

Exit status: 0 when the SDK was written, 1 when the spec uses constructs the generators do
not support (every problem is printed with its JSON pointer), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register", "run"]

LANGUAGES = ("python", "typescript", "go")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sdk",
        help="generate client SDKs from the OpenAPI spec",
        description="Client SDKs for Python, TypeScript and Go, generated from openapi/bitnet.yaml.",
    )
    sub = p.add_subparsers(dest="sdk_command", metavar="ACTION", required=True)
    gen = sub.add_parser(
        "generate",
        help="write one SDK into a folder",
        description=(
            "Write the SDK for LANG into DIR. Generation is deterministic: the same spec gives the "
            "same bytes. Files a previous run generated and this one does not are removed; other "
            "files in DIR are left alone."
        ),
    )
    gen.add_argument("--lang", required=True, choices=LANGUAGES, help="target language")
    gen.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    gen.add_argument("--spec", metavar="PATH", help="OpenAPI document (default: the project's openapi/bitnet.yaml)")
    gen.add_argument("--package-name", metavar="NAME",
                     help="Python import package or npm package name (default bitnet_client / bitnet-client)")
    gen.add_argument("--go-module", metavar="PATH",
                     help="Go module path written to go.mod (default: from --repository, else example.com/bitnet)")
    gen.add_argument("--repository", metavar="URL",
                     help="source repository of the SDK, written into package.json / pyproject.toml")
    gen.add_argument("--go-package", metavar="NAME", default="bitnet", help="Go package name (default %(default)s)")
    gen.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bitnet_generators import SpecError
    from bitnet_generators.generate import SdkOptions, generate

    options = SdkOptions(package_name=args.package_name, go_module=args.go_module, go_package=args.go_package,
                         repository=args.repository)
    try:
        written = generate(args.lang, args.out, spec=args.spec, options=options)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.lang} SDK: {len(written)} files in {args.out}")
    return 0
