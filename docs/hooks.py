"""mkdocs hook: fail the build when a page shows reST leftovers (``:class:`X```, ``text::``).

Docstrings are Google style in Markdown; a reST role or a ``::`` literal-block
marker is printed as is on the site. The check reads each rendered page,
outside code blocks.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from mkdocs.exceptions import PluginError

log = logging.getLogger("mkdocs.hooks.artifacts")

ARTIFACT = re.compile(
    r":(?:class|meth|func|data|mod|attr|exc|obj):(?:`|<code>)|\w::(?=\s|<|$)", re.M
)
CODE = re.compile(r"<pre\b.*?</pre>|<code\b.*?</code>", re.S)
ANCHOR = re.compile(r'id="(market_client[\w.]*)"')

# Objects whose docstrings are still being cleaned: reported, not fatal. Keep it empty.
PENDING: tuple[str, ...] = ()


def find_artifacts(html: str) -> list[tuple[str, str]]:
    """``(object id, text)`` of every reST leftover outside code in ``html``."""
    found = []
    for match in ARTIFACT.finditer(html):
        start = match.start()
        if any(m.start() <= start < m.end() for m in CODE.finditer(html)):
            continue
        anchors = ANCHOR.findall(html, 0, start)
        owner = anchors[-1] if anchors else ""
        found.append((owner, html[max(0, start - 30) : match.end() + 20].replace("\n", " ")))
    return found


def on_post_page(output: str, page: Any, config: Any) -> str:
    """Raise `PluginError` for leftovers outside `PENDING` objects."""
    bad = []
    for owner, text in find_artifacts(output):
        if owner.startswith(PENDING):
            log.info("reST leftover in %s (pending): %s", owner, text)
        else:
            bad.append(f"{owner or page.file.src_path}: ...{text}...")
    if bad:
        raise PluginError(
            f"{page.file.src_path} shows reST syntax (use `Name` in backticks, and an "
            "indented block after a blank line for code):\n  " + "\n  ".join(bad)
        )
    return output
