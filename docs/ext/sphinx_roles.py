"""A griffe extension for the API reference: sagakit's docstrings use a few
reStructuredText idioms (roles such as :class:`~sagakit.Saga`, and ``text::``
before a literal block) that Markdown would print as they are. This rewrites
them into Markdown when mkdocstrings loads the package (mkdocs.yml); the
source keeps them, for IDEs and ``help()``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj|const):`(~?)([^`]+)`"
)
LITERAL = re.compile(r"(\S)::$", re.MULTILINE)  # "text::" ends a paragraph
BARE = re.compile(r"^\s*::$\n?", re.MULTILINE)  # a lone "::" line


def markdown(text: str) -> str:
    """``text`` with its reST roles as code spans and literal markers dropped."""

    def role(match: re.Match[str]) -> str:
        target = match.group(2)
        shown = target.rsplit(".", 1)[-1] if match.group(1) else target
        return f"`{shown}`"

    text = ROLE.sub(role, text)
    text = BARE.sub("", text)
    return LITERAL.sub(r"\1:", text)


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self.on_object(obj=pkg)
