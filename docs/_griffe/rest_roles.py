"""A griffe extension for the API reference: Sphinx roles in docstrings as Markdown code.

The docstrings are written for Python's own tools and for reading in an
editor, with Sphinx cross-reference roles (``:class:`~jobs_core.errors.JobsError```,
``:meth:`Driver.ping <jobs_core.driver.Driver.ping>```). mkdocstrings renders
docstrings as Markdown, where those roles would show as written; this
extension turns each into inline code of the name a reader would see
(``JobsError``, ``Driver.ping``), as Sphinx itself displays them.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj|const|ref):`([^`]+)`")


def _shown(target: str) -> str:
    explicit = re.fullmatch(r"(.+?)\s*<[^>]+>", target)
    if explicit:
        return explicit.group(1)
    if target.startswith("~"):
        return target[1:].rsplit(".", 1)[-1]
    return target


def convert(text: str) -> str:
    """``text`` with every Sphinx role replaced by inline code of what Sphinx would show."""
    return ROLE.sub(lambda match: f"`{_shown(match.group(1))}`", text)


class RestRoles(griffe.Extension):
    """Rewrites the roles of every docstring griffe loads."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Convert the object's docstring, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Convert the docstrings of a whole package, once it is loaded (modules included)."""
        for obj in [pkg, *_walk(pkg)]:
            self.on_object(obj=obj)


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found: list[griffe.Object] = []
    for member in obj.members.values():
        if isinstance(member, griffe.Alias):
            continue
        found.append(member)
        found += _walk(member)
    return found
