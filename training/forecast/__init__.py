"""Hierarchical sales forecasting: base models, reconciliation, calibrated intervals, backtest, quarter plans.

Public entry points: :func:`training.forecast.backtest.run_backtest`,
:func:`training.forecast.train.train_sales` and the serving functions in :mod:`training.forecast.serve_api`.
"""

__all__: list[str] = []
