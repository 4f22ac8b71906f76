{{ cookiecutter.description | python_string }}

__version__ = "0.1.0"
