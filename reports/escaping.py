"""Text from results files, made inert for each format the report writes.

Nothing a plugin or a results file says is markup: a backend may be named
``<script>alert(1)</script>``, a failure reason may hold ``[x](javascript:alert(1))``, a path
may start with ``=HYPERLINK(...)``. Each writer passes every such string through the function
for its format, and only text the report itself wrote stays as it is:

- HTML: Jinja2 autoescapes the template, and the pandas tables are rendered with
  ``escape="html"`` (:mod:`reports.html`); this module is not needed there.
- Markdown: :func:`markdown_text` (and :func:`markdown_code` for identifiers,
  :func:`markdown_command` for reproduce commands).
- CSV: :func:`csv_cell`, the OWASP rule against formula injection.
- Plots: :func:`plot_text`, since matplotlib reads ``$...$`` as mathtext and hides labels that
  start with ``_`` (it escapes XML itself).
"""

from __future__ import annotations

import re
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet evaluate a cell (OWASP, CSV injection)."""
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*\[\]|~$])")
_EMPHASIS_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
"""An underscore that is not between two letters or digits (``train_step`` cannot emphasise)."""
_HTML = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))
_IDENTIFIER = re.compile(r"[\w.,:=+\-/ ]+")
_COMMAND = re.compile(r"[\w.,:=+\-/ '\[\]]+")
_ZERO_WIDTH_SPACE = "\u200b"


def markdown_text(value: Any) -> str:
    """``value`` as literal Markdown text on one line, safe in a table cell or a list item.

    Whitespace (newlines included) becomes one space, so nothing can start a new block or row;
    the HTML specials become entities, so no raw HTML or ``<javascript:...>`` autolink survives;
    and the characters of Markdown's inline syntax (links, images, code, emphasis, tables,
    GitHub math) are backslash-escaped.
    """
    text = " ".join(str(value).split())
    text = _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)
    text = _EMPHASIS_UNDERSCORE.sub(r"\\_", text)
    for special, entity in _HTML:
        text = text.replace(special, entity)
    return text


def markdown_code(value: Any) -> str:
    """An identifier (check name, config) as inline code; anything else as :func:`markdown_text`.

    Inside a code span neither backslash escapes nor entities work, so only text made of
    characters that mean nothing there goes into one.
    """
    text = str(value)
    return f"`{text}`" if _IDENTIFIER.fullmatch(text) else markdown_text(text)


def markdown_command(value: Any) -> str:
    """A shell command (a test id in quotes, with its brackets) as inline code; else as :func:`markdown_text`.

    Quotes and brackets mean nothing inside a code span, and with no parenthesis allowed no
    ``[text](target)`` can form even if a renderer ignored the span.
    """
    text = str(value)
    return f"`{text}`" if _COMMAND.fullmatch(text) else markdown_text(text)


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet would evaluate, prefixed with ``'``; everything else as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def plot_text(value: Any) -> str:
    """``value`` as a matplotlib label: one line, literal dollars, and in the legend even if it starts with ``_``."""
    text = " ".join(str(value).split()).replace("$", r"\$")
    return _ZERO_WIDTH_SPACE + text if text.startswith("_") else text
