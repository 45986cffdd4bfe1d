"""Dockyard's Qt-free engine: load, inspect, convert and validate ML models.

Importing this package is cheap: it pulls in neither Qt nor any ML framework. Framework imports
happen inside the functions that need them.
"""

__version__ = "0.1.0"
