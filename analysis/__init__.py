"""Run folder -> tidy dataset (metrics.csv) -> summary.json, charts and one report.html.

Entry points for other parts of poolbench: `summarize` (analysis.summary), `collect` and
`build_report` (analysis.report).
"""
