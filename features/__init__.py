"""salesml features: dataset specs, loading and validation, and the point-in-time pipelines."""
