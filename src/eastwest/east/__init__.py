"""The east side: sources, warehouse, validation, and a run's plan, steps and report."""
