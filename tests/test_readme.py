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


def test_the_paper_cost_table_is_current_and_in_readme():
    """results/benchmarks/paper_cost.md equals what the studies' paper_cost and the GPU report give now."""
    from vpkit import studies

    f = report.REPO_ROOT / studies.COST_FILE
    assert f.read_text() == studies.paper_cost_markdown(studies.paper_costs()), "run: python3 -m vpkit cost"
    assert f"<!-- include: {studies.COST_FILE} -->" in (report.REPO_ROOT / "README.md").read_text()
