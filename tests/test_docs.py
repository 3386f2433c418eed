"""The documentation site covers what users look up: every rule, every reader error code,
every exit code, and every page reachable from the nav (the strict build, run in CI by
scripts/docs.sh, checks links and API references)."""
import re
from pathlib import Path

from fastmask.engine import errors as engine_errors
from fastmask.formats.errors import CODES
from fastmask.jobs.rules_core import RULES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def test_rules_page_lists_every_rule_in_its_table():
    text = _page("rules.md")
    missing = [code for code in RULES if not re.search(rf"^\| `{re.escape(code)}` \|", text, re.M)]
    assert not missing, f"rules without a row in docs/rules.md: {missing}"


def test_formats_page_lists_every_reader_error_code():
    text = _page("formats.md")
    missing = [code for code in CODES if f"| `{code}` |" not in text]
    assert not missing, f"error codes without a row in docs/formats.md: {missing}"


def test_engine_page_lists_every_exit_code():
    codes = sorted({value for name, value in vars(engine_errors).items()
                    if name.startswith("EXIT_") and isinstance(value, int)})
    assert codes == [0, 1, 2, 3, 4]
    section = _page("engine.md").split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    missing = [c for c in codes if not re.search(rf"^\| {c} \|", section, re.M)]
    assert not missing, f"exit codes not described in docs/engine.md: {missing}"


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages


def test_api_pages_cover_the_public_modules():
    for module in ("rle", "raster", "contours", "components", "metrics", "formats", "sample"):
        assert f"::: fastmask.{module}\n" in _page(f"api/{module}.md")


def test_no_issue_numbers_or_outside_files_in_docs_or_readme():
    texts = {p: p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *DOCS.rglob("*.md")]}
    for path, text in texts.items():
        assert not re.search(r"\bissue \d+", text, re.I), path
        assert "../shared" not in text and "DESIGN.md" not in text, path
        assert not re.search(r"\bsession \d+", text, re.I), path


def test_readme_is_short_and_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    for target in re.findall(r"\]\(((?:docs/)[^)#]+)", text):
        assert (ROOT / target).is_file(), target
