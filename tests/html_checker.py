"""The Nu Html Checker (vnu.jar, from npm with axe-core: tests/e2e/package.json) over rendered
pages, in one run: the checker's JVM takes a second or two to start, so a test hands it every
page at once and gets back each error named by the page it came from."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

VNU = Path(__file__).resolve().parent / "e2e" / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"

needs_checker = pytest.mark.skipif(
    not VNU.exists() or shutil.which("java") is None,
    reason="the Nu Html Checker needs Java and tests/e2e/node_modules/vnu-jar (bash .ci/html-checker.sh)",
)


def html_errors(pages: Mapping[str, bytes], folder: Path) -> list[str]:
    """Every error the checker finds in pages (name -> HTML), as 'name.html:line: message'.

    The pages are written to folder, one file per name, so a failure can be read there too.
    """
    files = []
    for name, html in pages.items():
        path = folder / f"{name}.html"
        path.write_bytes(html)
        files.append(str(path))
    result = subprocess.run(
        ["java", "-jar", str(VNU), "--format", "json", "--stdout", *sorted(files)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        messages = json.loads(result.stdout)["messages"]
    except (json.JSONDecodeError, KeyError):
        raise AssertionError(
            f"the checker gave no report (exit {result.returncode}):\n{result.stderr}"
        ) from None
    return [
        f"{Path(m.get('url', '')).name}:{m.get('lastLine')}: {m['message']}"
        + (f" [{' '.join(m['extract'].split())}]" if m.get("extract") else "")
        for m in messages
        if m["type"] == "error" or m.get("subType") == "fatal"
    ]
