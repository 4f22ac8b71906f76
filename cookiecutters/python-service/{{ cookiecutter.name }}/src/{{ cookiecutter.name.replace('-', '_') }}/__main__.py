"""`python -m {{ cookiecutter.name.replace('-', '_') }}`: serve on the port from the settings."""

import uvicorn

from .settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run(
        {{ (cookiecutter.name.replace('-', '_') ~ ".app:app") | python_string }},
        host="0.0.0.0",  # noqa: S104 - inside a container, the pod's network namespace is the boundary
        port=settings.port,
        proxy_headers=True,
        access_log=False,
        log_config=None,
    )


if __name__ == "__main__":
    main()
