"""The name templates load the value filters by (`_extensions` in cookiecutter.json).

Templates, generated repositories and third-party template sources name
`actions_server.template_filters.ValueFilters`, so that path stays; the code is
in templates/filters.py.
"""

from .templates.filters import ValueFilters

__all__ = ["ValueFilters"]
