"""The generated SDKs are publishable as generated: ``npm pack`` ships a built ``dist/``,
``python -m build`` and ``twine check`` pass and the package installs and imports on the
oldest Python the project supports (3.10), and the package metadata carries the license
(from the spec) and the repository and Go module path (generator options).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from bitnet_generators.generate import SdkOptions, render_files

from ._toolchain import node_modules, run

REPOSITORY = "https://github.com/acme/bitnet-sdks"


def _python_3_10() -> str | None:
    """A working Python 3.10 (on PATH, or one pyenv installed), else None."""
    candidates = [shutil.which("python3.10"), *map(str, Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))]
    for candidate in filter(None, candidates):
        done = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                              capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip() == "(3, 10)":
            return candidate
    return None


def _copy(sdk: Path, to: Path) -> Path:
    """The shared session SDK must stay clean: build in a copy."""
    shutil.copytree(sdk, to, ignore=shutil.ignore_patterns("node_modules", "dist"))
    return to


def test_repository_and_license_reach_the_metadata(api) -> None:
    options = SdkOptions(repository=REPOSITORY + ".git")
    package = json.loads(render_files("typescript", api, options)["package.json"])
    assert package["license"] == "MIT"
    assert package["repository"] == {"type": "git", "url": REPOSITORY + ".git"}
    pyproject = render_files("python", api, options)["pyproject.toml"]
    assert 'license = "MIT"' in pyproject and f'Repository = "{REPOSITORY}.git"' in pyproject
    assert 'requires-python = ">=3.10"' in pyproject
    go_mod = render_files("go", api, options)["go.mod"]
    assert "\nmodule github.com/acme/bitnet-sdks\n" in go_mod  # from the repository
    explicit = render_files("go", api, SdkOptions(repository=REPOSITORY, go_module="example.org/x/go"))
    assert "\nmodule example.org/x/go\n" in explicit["go.mod"]


@pytest.mark.slow
def test_npm_pack_ships_the_built_dist(sdk_dir, tmp_path: Path) -> None:
    sdk = _copy(sdk_dir("typescript"), tmp_path / "sdk")
    (sdk / "node_modules").symlink_to(node_modules())  # TypeScript for the prepack build
    out = json.loads(run(["npm", "pack", "--json", "--pack-destination", str(tmp_path)], sdk))
    with tarfile.open(tmp_path / out[0]["filename"]) as tar:
        names = set(tar.getnames())
    assert {"package/dist/index.js", "package/dist/index.d.ts", "package/package.json"} <= names
    package = json.loads((sdk / "package.json").read_text())
    for entry in (package["main"], package["types"], package["exports"]["."]["import"]):
        assert "package/" + entry.removeprefix("./") in names


@pytest.mark.slow
def test_python_sdk_builds_passes_twine_check_and_runs_on_3_10(sdk_dir, tmp_path: Path) -> None:
    sdk = _copy(sdk_dir("python"), tmp_path / "sdk")
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(sdk)], tmp_path, timeout=900)
    built = sorted(dist.iterdir(), key=lambda p: p.suffix)
    assert [p.suffix for p in built] == [".gz", ".whl"], built
    run([sys.executable, "-m", "twine", "check", "--strict", *map(str, built)], tmp_path)
    with zipfile.ZipFile(built[1]) as wheel:
        meta = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = wheel.read(meta).decode()
    assert "Requires-Python: >=3.10" in metadata and "License-Expression: MIT" in metadata
    python310 = _python_3_10()
    if python310 is None:
        pytest.skip("no Python 3.10 installed to install the SDK into")
    env = tmp_path / "py310"
    subprocess.run([python310, "-m", "venv", str(env)], check=True)
    run([str(env / "bin" / "pip"), "install", "-q", str(built[1])], tmp_path, timeout=900)
    out = run([str(env / "bin" / "python"), "-c",
               "import sys, bitnet_client; print(sys.version_info[:2], bitnet_client.BitNetClient.__name__)"],
              tmp_path)
    assert out.strip() == "(3, 10) BitNetClient"


