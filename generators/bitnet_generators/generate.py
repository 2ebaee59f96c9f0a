"""One entry point for every language: read the spec, check it, render, write.

The spec is checked once (:func:`bitnet_generators.build.build_api`) whatever
the language, so every SDK refuses the same constructs with the same report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bitnet_generators import LANGUAGES
from bitnet_generators.build import build_api
from bitnet_generators.ir import Api
from bitnet_generators.render import write_tree
from bitnet_generators.spec import load_spec

__all__ = ["SdkOptions", "generate", "render_files"]


@dataclass(frozen=True)
class SdkOptions:
    """Names of the generated packages (defaults suit this project's API).

    ``package_name``: Python import package / npm package (``bitnet_client`` / ``bitnet-client``);
    ``go_module``: the Go module path (default: from ``repository``, else ``example.com/bitnet``);
    ``go_package``: the Go package name; ``repository``: the SDK's source repository URL,
    written into the package metadata (npm ``repository``, Python ``project.urls``).
    """

    package_name: str | None = None
    go_module: str | None = None
    go_package: str = "bitnet"
    client_name: str = "BitNetClient"
    repository: str | None = None

    def module_path(self) -> str:
        """The Go module path: given, or the repository URL without its scheme and ``.git``."""
        if self.go_module:
            return self.go_module
        if self.repository:
            bare = self.repository.split("://", 1)[-1].removesuffix("/").removesuffix(".git")
            return bare.removeprefix("git@").replace(":", "/")
        return "example.com/bitnet"


def render_files(language: str, api: Api, options: SdkOptions | None = None) -> dict[str, str]:
    """Every file of one SDK (relative path → text), without writing anything."""
    options = options or SdkOptions()
    if language == "typescript":
        from bitnet_generators.typescript import TsOptions, render

        return render(api, TsOptions(package_name=options.package_name or "bitnet-client",
                                     client_name=options.client_name, repository=options.repository))
    if language == "go":
        from bitnet_generators.golang import GoOptions
        from bitnet_generators.golang import render as render_go

        return render_go(api, GoOptions(module=options.module_path(), package=options.go_package))
    if language == "python":
        from bitnet_generators.python import PyOptions
        from bitnet_generators.python import render as render_py

        return render_py(api, PyOptions(package_name=options.package_name or "bitnet_client",
                                        client_name=options.client_name, repository=options.repository))
    raise ValueError(f"unknown language {language!r}; choose from {', '.join(LANGUAGES)}")


def generate(language: str, out: str | Path, *, spec: str | Path | None = None,
             options: SdkOptions | None = None) -> list[Path]:
    """Generate the ``language`` SDK from ``spec`` (default: the project's spec) into ``out``.

    Raises :class:`~bitnet_generators.errors.SpecError` (listing every problem) when the spec
    uses constructs the generators do not support. Returns the files written.
    """
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; choose from {', '.join(LANGUAGES)}")
    api = build_api(load_spec(spec))
    return write_tree(render_files(language, api, options), Path(out))
