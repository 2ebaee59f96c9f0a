"""Fixtures of the SDK generator tests: the project's API model, and each SDK generated
once per session (generation itself is tested for determinism separately)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bitnet_generators.build import build_api
from bitnet_generators.generate import render_files
from bitnet_generators.ir import Api
from bitnet_generators.render import write_tree
from bitnet_generators.spec import load_spec


@pytest.fixture(scope="session")
def api() -> Api:
    return build_api(load_spec())


@pytest.fixture(scope="session")
def rendered(api: Api) -> dict[str, dict[str, str]]:
    """Every SDK's files, rendered once per session."""
    return {lang: render_files(lang, api) for lang in ("python", "typescript", "go")}


@pytest.fixture(scope="session")
def sdk_dir(rendered: dict[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory):
    """``sdk_dir(lang)``: a fresh folder holding that SDK (one per session and language)."""
    made: dict[str, Path] = {}

    def make(lang: str) -> Path:
        if lang not in made:
            made[lang] = tmp_path_factory.mktemp(f"sdk-{lang}")
            write_tree(rendered[lang], made[lang])
        return made[lang]

    return make
