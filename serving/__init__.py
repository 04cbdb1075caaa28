"""salesml serving: the BentoML service over the MLflow champions."""
