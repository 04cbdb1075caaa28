"""Where data and models live; read from the environment (``SALESML_*``, ``MLFLOW_TRACKING_URI``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["REPO_ROOT", "Settings", "get_settings"]

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SALESML_", extra="ignore")

    data_dir: Path | None = Field(
        None, description="root of the public data sets; default ../shared/datasets"
    )
    home: Path = Field(REPO_ROOT, description="project folder holding models/ and data/ (generated data)")
    api_token: str | None = None

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
