"""HTTP routes, one module per resource (score, feedback, lists, verdicts, models, health)."""
