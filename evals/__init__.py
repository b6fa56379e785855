"""Evaluation suites for citeqa: scoring (`evals.metrics`) and running/gating (`evals.runner`)."""
