"""Regenerate (or check) the committed golden SDKs under ``tests/generators/golden/<lang>/``.

    python -m bitnet_generators.golden            # rewrite every language
    python -m bitnet_generators.golden --check    # exit 1 and show a diff when they differ

Run it after changing the spec or a generator, and commit the result with the change: the
test suite regenerates each SDK and fails with this same diff when a golden is stale.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from bitnet_generators import LANGUAGES
from bitnet_generators.build import build_api
from bitnet_generators.generate import render_files
from bitnet_generators.render import GENERATED_MARK, MANIFEST, write_tree
from bitnet_generators.spec import DEFAULT_SPEC, load_spec

__all__ = ["GOLDEN_ROOT", "diff", "main"]

#: Where the goldens live in a checkout of the project.
GOLDEN_ROOT = Path(__file__).resolve().parents[2] / "tests" / "generators" / "golden"


def diff(language: str, root: Path = GOLDEN_ROOT, spec: Path = DEFAULT_SPEC) -> str:
    """A unified diff from the golden of ``language`` to a fresh generation ('' when equal).

    Files whose only change is the provenance header (the spec's digest) are listed after the
    real changes, one line each, so the diff shows what changed in the code first.
    """
    fresh = render_files(language, build_api(load_spec(spec)))
    folder = root / language
    old = {str(p.relative_to(folder)): p.read_text(encoding="utf-8")
           for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST} if folder.exists() else {}
    chunks: list[str] = []
    header_only: list[str] = []
    for rel in sorted(set(old) | set(fresh)):
        a, b = old.get(rel, ""), fresh.get(rel, "")
        if a == b:
            continue
        if a and b and _body(a) == _body(b):
            header_only.append(f"header only: golden/{language}/{rel}\n")
            continue
        chunks.extend(difflib.unified_diff(a.splitlines(True), b.splitlines(True),
                                           f"golden/{language}/{rel}", f"generated/{language}/{rel}"))
    return "".join(chunks + header_only)


def _body(text: str) -> str:
    """The text without its provenance line."""
    return "\n".join(line for line in text.splitlines() if GENERATED_MARK not in line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bitnet_generators.golden", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--lang", choices=LANGUAGES, action="append", help="only this language (repeatable)")
    args = parser.parse_args(argv)
    status = 0
    api = build_api(load_spec(DEFAULT_SPEC))
    for language in args.lang or LANGUAGES:
        if args.check:
            text = diff(language)
            if text:
                sys.stdout.write(text)
                status = 1
            continue
        files = render_files(language, api)
        folder = GOLDEN_ROOT / language
        # Goldens hold generated files only: anything else there is stale output of a renamed file.
        for stale in sorted(p for p in folder.rglob("*")
                            if p.is_file() and p.name != MANIFEST and str(p.relative_to(folder)) not in files):
            stale.unlink()
        write_tree(files, folder)
        print(f"{language}: {len(files)} files in {folder}")
    return status


if __name__ == "__main__":
    sys.exit(main())
