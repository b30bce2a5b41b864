"""The development stack: embedded PostgreSQL and Redis (``servers``), the ``make run`` launcher
(``launcher``), the pytest plugin that gives the tests their servers (``pytest_plugin``) and the
``python -m config.devstack run|start|stop|status`` command line (``__main__``).

Development tooling only: the application never imports it (``lint-imports`` checks that), the
production image leaves it out, and its servers come from the ``devstack`` extra.
"""
