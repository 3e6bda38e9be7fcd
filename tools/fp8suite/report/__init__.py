"""Runs -> comparison groups, figures, plots, report.md and summary.json."""
