from vpkit import harness, report


def test_readme_quotes_match_results():
    """Every results block quoted in README equals the file the offline run wrote."""
    assert report.sync_readme(check=True) == [], "run: python -m vpkit readme"


def test_readme_names_every_notebook_and_the_two_commands():
    text = (report.REPO_ROOT / "README.md").read_text()
    for f in harness.NOTEBOOKS.values():
        assert f in text, f"README must list notebooks/{f}"
    assert "bash scripts/install.sh && python3 -m vpkit replicate" in text
    assert "bash scripts/install.sh && python3 -m pytest" in text


def test_ci_runs_the_readme_test_command():
    ci = (report.REPO_ROOT / ".ci" / "run").read_text()
    assert "bash scripts/install.sh && python3 -m pytest" in ci
