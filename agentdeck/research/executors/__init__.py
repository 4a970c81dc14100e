"""Executors: where a research job runs (local, ray, slurm)."""
