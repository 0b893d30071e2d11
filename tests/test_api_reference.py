"""The API reference covers every package, and shows Sphinx roles as a reader would see them.

(``mkdocs build --strict``, the ``docs`` nox session, renders the pages from the docstrings.)
"""

from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_package_has_an_api_page_generated_from_its_docstrings() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for package in sorted((ROOT / "packages").iterdir()):
        sources = sorted(p.name for p in (package / "src").glob("*") if (p / "__init__.py").exists())
        if not sources:
            continue
        page = ROOT / "docs" / "reference" / "api" / f"{package.name}.md"
        assert page.exists(), f"{package.name} has no API page"
        assert f"::: {sources[0]}\n" in page.read_text()
        assert f"reference/api/{package.name}.md" in nav


def test_sphinx_roles_become_the_code_sphinx_would_show() -> None:
    spec = importlib.util.spec_from_file_location("rest_roles", ROOT / "docs" / "_griffe" / "rest_roles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (
        "Raises :class:`~jobs_core.errors.ConfigurationError`; see "
        ":meth:`Driver.ping <jobs_core.driver.Driver.ping>` and :func:`jobs_core.job`."
    )
    assert module.convert(text) == ("Raises `ConfigurationError`; see `Driver.ping` and `jobs_core.job`.")
