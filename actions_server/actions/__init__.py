"""The actions: one module each, exporting a factory that takes the parts the action uses.

`services.built_in_actions` calls every factory once, with its parts named: that
is where an action is registered (docs/architecture.md, "Adding an action").
"""
