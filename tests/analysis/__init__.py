"""Tests of the analysis package: collectors, summary, charts, report, CLI edges."""
