"""``brokerlink specs``: the committed documents in docs/ are what the server publishes.

When this fails, a route, a schema or the stream protocol changed without the documents being
regenerated: run ``make specs`` (``brokerlink specs write``) and commit docs/openapi.json and
docs/asyncapi.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from brokerlink.cli import specs
from brokerlink.cli.main import app

DOCS = Path(__file__).resolve().parents[2] / "docs"
runner = CliRunner()


@pytest.fixture(scope="module")
def published() -> dict[str, dict[str, Any]]:
    return specs.documents()


@pytest.mark.parametrize("name", [specs.OPENAPI_FILE, specs.ASYNCAPI_FILE])
def test_the_committed_documents_are_current(published: dict[str, dict[str, Any]], name: str) -> None:
    committed = json.loads((DOCS / name).read_text(encoding="utf-8"))
    assert committed == published[name], f"docs/{name} is out of date: run `make specs` and commit it"
    assert (DOCS / name).read_text(encoding="utf-8") == specs.render(published[name]), "formatted as the command writes"


def test_write_then_check(
    published: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(specs, "documents", lambda: published)  # built once above; the command's own logic here
    out = tmp_path / "docs"
    checked = runner.invoke(app, ["specs", "write", "--out-dir", str(out), "--check"])
    assert checked.exit_code == 1, "nothing written yet"
    assert not out.exists(), "--check writes nothing"

    written = runner.invoke(app, ["specs", "write", "--out-dir", str(out)])
    assert written.exit_code == 0, written.output
    assert json.loads((out / "openapi.json").read_text()) == published["openapi.json"]
    assert json.loads((out / "asyncapi.json").read_text()) == published["asyncapi.json"]
    assert runner.invoke(app, ["specs", "write", "--out-dir", str(out), "--check"]).exit_code == 0

    (out / "asyncapi.json").write_text("{}\n")
    stale = runner.invoke(app, ["specs", "write", "--out-dir", str(out), "--check"])
    assert stale.exit_code == 1
    said = stale.output.replace("\n", "")  # the console wraps a long temp path anywhere
    assert "asyncapi.json" in said
    assert "openapi.json" not in said
