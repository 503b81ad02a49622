"""Evaluate: verdict parsing, metrics, benchmark loaders, the runner and the report tables (issue #9).

Entry point: `fakeclue_builder.evaluate.runner.run_evaluation(cfg, run_dir)`; CLI: `fakeclue-builder evaluate`.
"""
