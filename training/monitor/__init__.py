"""Watching served models: drift, calibration, forecast accuracy and anomalies, alert rules."""
