"""What a newcomer reads first works: install, subscribe before placing, docs that open."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_says_how_to_install_before_using_the_command() -> None:
    install = README.index("pip install -e .")
    assert install < README.index("market-client sim")


def test_first_code_example_subscribes_before_it_places_an_order() -> None:
    first = re.search(r"```python\n(.+?)```", README, re.S)
    assert first
    code = first.group(1)
    assert "async with client.events(" in code
    assert code.index("async with client.events(") < code.index("place_order(")


def test_readme_and_docs_home_show_the_demo_picture() -> None:
    assert "](docs/img/demo.svg)" in README
    assert "](img/demo.svg)" in (ROOT / "docs" / "index.md").read_text()
    assert (ROOT / "docs" / "img" / "demo.svg").read_text().startswith("<svg")
    assert "def screenshots(" in (ROOT / "noxfile.py").read_text()


def test_docs_site_opens_from_files_and_says_how_to_serve_it() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^use_directory_urls: false$", config, re.M)
    assert re.search(r"^  - docs/hooks.py$", config, re.M)  # the reST-leftover check
    assert "mkdocs serve" in README


def test_docs_hook_finds_rest_leftovers_outside_code() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("hooks", ROOT / "docs" / "hooks.py")
    assert spec and spec.loader
    hooks = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(hooks)
    except ModuleNotFoundError:  # mkdocs is in the docs extra only
        import pytest

        pytest.skip("mkdocs is not installed")
    html = (
        '<h2 id="market_client.Event">Event</h2><p>see :class:<code>X</code>; an example::</p>'
        "<pre><code>a[::2] and :meth:`kept`</code></pre><p>fine: <code>x::y</code></p>"
    )
    found = hooks.find_artifacts(html)
    assert [owner for owner, _ in found] == ["market_client.Event", "market_client.Event"]
