"""Settings from the environment (12-factor); every variable is prefixed with `APP_`."""

from functools import lru_cache

{% if cookiecutter.database == "postgres" -%}
from pydantic import PostgresDsn, SecretStr
{% endif -%}
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APP_", env_file=".env", extra="ignore")

    service_name: str = {{ cookiecutter.name | python_string }}
    environment: str = "local"
    port: int = {{ cookiecutter.http_port | int }}
    log_level: str = "INFO"
    # Requests slower than this count against the latency SLO, so it is also a
    # histogram bucket bound: the SLO queries select `le` equal to it.
    latency_slo_threshold_seconds: float = {{ (cookiecutter.latency_slo_threshold_ms | int) / 1000 }}
{%- if cookiecutter.database == "postgres" %}
    database_url: SecretStr | None = None
    database_timeout_seconds: float = 2.0

    def database_dsn(self) -> str | None:
        if self.database_url is None:
            return None
        # Validates the URL's shape without logging the password on error.
        PostgresDsn(self.database_url.get_secret_value())
        return self.database_url.get_secret_value()
{%- endif %}


@lru_cache
def get_settings() -> Settings:
    return Settings()
