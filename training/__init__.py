"""salesml training: forecasting and classifier trainers, backtests, MLflow tracking and promotion."""
