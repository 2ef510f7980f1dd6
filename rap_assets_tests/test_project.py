"""Project-level promises: the definitions validate, the sample corpus is fresh, the README
documents every environment variable."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from rap_assets.sample_corpus import ROOT, load_sources, render
from rap_assets.settings import ENV_VARS

from .conftest import REPO


def test_dagster_definitions_validate() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "definitions",
            "validate",
            "-m",
            "rap_assets.definitions",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rendered_sample_corpus_is_up_to_date() -> None:
    rendered = render(load_sources())
    stale = [
        str(rel)
        for rel, text in rendered.items()
        if not (ROOT / rel).is_file() or (ROOT / rel).read_text(encoding="utf-8") != text
    ]
    assert not stale, f"run `python -m rap_assets.sample_corpus`: stale {stale[:5]}"


def test_sample_corpus_is_big_enough_and_original() -> None:
    artists = load_sources()
    songs = [s for a in artists for s in a.songs if s.kind == "song"]
    assert len(artists) >= 6 and len(songs) >= 60
    assert len({a.style for a in artists}) == len(artists)
    assert sum(1 for s in songs if s.features) >= 6


def test_readme_documents_every_env_var() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [name for name in ENV_VARS if f"`{name}`" not in readme]
    assert not missing, f"README lacks {missing}"


def test_code_reads_only_documented_env_vars() -> None:
    pattern = re.compile(
        r"""(?:environ(?:\.get)?\(|getenv\(|EnvVar\(|optional_env\(|env_or\()\s*["']([A-Z_]+)["']"""
    )
    used = {
        m
        for path in Path(REPO / "rap_assets").rglob("*.py")
        for m in pattern.findall(path.read_text())
    }
    assert used, "the pattern found nothing: it is out of date"
    assert used <= set(ENV_VARS), f"undocumented: {sorted(used - set(ENV_VARS))}"
