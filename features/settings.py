"""Where data and models live; read from the environment (``SALESML_*``, ``MLFLOW_TRACKING_URI``)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["REPO_ROOT", "Settings", "env_positive_int", "get_settings"]

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SALESML_", extra="ignore")

    data_dir: Path | None = Field(
        None, description="root of the public data sets; default ../shared/datasets"
    )
    home: Path = Field(REPO_ROOT, description="project folder holding models/ and data/ (generated data)")
    api_token: str | None = None
    # The data set whose champion the service serves for each product (a data set name or a spec path); the
    # defaults are the ones `make demo` trains. `salesml serve --sales/--churn/--leads` sets them.
    serve_sales: str = "walmart"
    serve_churn: str = "cdnow"
    serve_leads: str = "bank-marketing"

    def served_datasets(self) -> dict[str, str]:
        """Product (registry name) -> the data set served for it."""
        return {
            "sales_forecast": self.serve_sales,
            "churn_risk": self.serve_churn,
            "lead_score": self.serve_leads,
        }

    def data_root(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir
        candidates = [base / ".." / "shared" / "datasets" for base in (self.home, REPO_ROOT, Path.cwd())]
        for candidate in candidates:
            if candidate.is_dir():
                return candidate.resolve()
        return candidates[1].resolve()

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def generated_dir(self) -> Path:
        """Generated (synthetic) data and materialized feature snapshots; git-ignored."""
        return self.home / "data"


def get_settings() -> Settings:
    return Settings()


def env_positive_int(name: str, default: int) -> int:
    """The environment variable ``name`` as a positive integer; ``default`` if it is unset, empty, not a whole
    number or 0. Read where a plain function must not build :class:`Settings` (BentoML's service decorator at
    import time, LightGBM's thread count per prediction)."""
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdecimal() and value.isascii() and int(value) > 0 else default
