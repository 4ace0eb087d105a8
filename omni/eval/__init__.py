"""Offline evaluation: manifests, scoring, the resumable batched runner, reports."""
